"""The checkpoint's tokenizer through `tokenizers`: ids, encoding, decoding, incremental text."""

from __future__ import annotations

import random

import pytest

from qwen3_asr_stream.text.prompts import asr_prompt_text
from qwen3_asr_stream.text.tokenizer import IncrementalDetokenizer, TextTokenizer

PUBLISHED_IDS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|audio_start|>": 151669,
    "<|audio_end|>": 151670, "<non_speech>": 151675, "<|audio_pad|>": 151676, "<asr_text>": 151704,
    "<timestamp>": 151705,
}
TEXTS = [
    "hello world", "It's the 3rd time we've met, isn't it?", "我们今天下午三点开会。", "mixed 中文 and English 42",
    "line one\nline two\r\n\n  indented", "tabs\tand   spaces  ", "emoji 🎙️ and accents: café naïve",
    "language English<asr_text>the transcript", "<|im_start|>system\nctx<|im_end|>\n",
]


@pytest.fixture(scope="module")
def tok(checkpoints):
    return TextTokenizer.from_folder(checkpoints["asr"])


def test_special_tokens_at_published_ids(tok):
    for token, token_id in PUBLISHED_IDS.items():
        assert tok.token_id(token) == token_id
    assert tok.is_special(151645) and tok.is_special(151676)
    assert not tok.is_special(151704)  # <asr_text> survives skip_special_tokens: the output parser needs it


def test_encoding_and_decoding_match_the_reference_tokenizer(tok, checkpoints):
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(checkpoints["asr"]))
    for text in TEXTS:
        assert tok.encode(text) == reference.encode(text, add_special_tokens=False), text
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(0, 151706) for _ in range(rng.randrange(1, 30))]
        assert tok.decode(ids) == reference.decode(ids, skip_special_tokens=True,
                                                   clean_up_tokenization_spaces=False)
        assert tok.decode(ids, skip_special_tokens=False) == reference.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_prompt_text_is_the_official_chat_template(tok):
    text = asr_prompt_text(3, "hot words", "English")
    assert text == ("<|im_start|>system\nhot words<|im_end|>\n<|im_start|>user\n<|audio_start|>"
                    "<|audio_pad|><|audio_pad|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\n"
                    "language English<asr_text>")
    assert tok.encode(text).count(151676) == 3


def test_incremental_text_never_shows_a_broken_character(tok):
    rng = random.Random(1)
    # Byte-level tokens of multi-byte characters: many ids end inside a character.
    for text in ["我们今天下午三点开会", "naïve café 🎙️ ok", "日本語のテキストです", "plain ascii text"]:
        ids = tok.encode(text)
        detok = IncrementalDetokenizer(tok)
        shown, i = [], 0
        while i < len(ids):
            step = rng.randrange(1, 3)
            piece = detok.push(ids[i : i + step])
            i += step
            assert "\ufffd" not in piece
            shown.append(piece)
        shown.append(detok.flush())
        assert "".join(shown) == text


def test_incremental_text_holds_back_a_split_character(tok):
    vocab_ids = [tok._tok.token_to_id(s) for s in ("æĪ", "ĳ")]  # the two halves of 我 (e6 88 91) as byte tokens
    assert None not in vocab_ids, "the precondition: the test vocabulary has the two byte tokens of 我"
    detok = IncrementalDetokenizer(tok)
    assert detok.push([vocab_ids[0]]) == ""
    assert detok.push([vocab_ids[1]]) == "我"
