"""The tokenizer side of the random-weight checkpoints: special tokens and the BPE files.

* the added (special) tokens at their published ids 151643..151705 (``SPECIAL_TOKENS``
  and the ids the configs refer to), and the processor's chat template;
* a small byte-level BPE in the Qwen2 layout: merges learned from a fixed training
  text, the remaining ids up to 151642 filled with decode-only strings, written as
  ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (no ``tokenizer.json``).

The tokenizer is the same for every checkpoint (the weights' seed does not change it).
"""

from __future__ import annotations

import functools
import json
import pathlib
import random
from typing import Iterator

from ..text.tokenizer import QWEN2_SPLIT_PATTERN

__all__ = [
    "FIRST_SPECIAL_ID",
    "ENDOFTEXT_ID",
    "IM_START_ID",
    "IM_END_ID",
    "AUDIO_START_ID",
    "AUDIO_END_ID",
    "NON_SPEECH_ID",
    "AUDIO_PAD_ID",
    "ASR_TEXT_ID",
    "TIMESTAMP_ID",
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "build_tokenizer_files",
    "build_tokenizer_config",
    "write_tokenizer",
]

# --------------------------------------------------------------------------------------
# Special tokens and chat template
# --------------------------------------------------------------------------------------

#: Ids below this are ordinary byte-level BPE tokens; the added tokens start here.
FIRST_SPECIAL_ID = 151643

ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
AUDIO_START_ID = 151669
AUDIO_END_ID = 151670
NON_SPEECH_ID = 151675
AUDIO_PAD_ID = 151676
ASR_TEXT_ID = 151704
TIMESTAMP_ID = 151705


def _special_token_table() -> tuple[tuple[int, str, bool], ...]:
    """(id, content, special) for every added token 151643..151705, Qwen2/Qwen3 order."""
    names = [
        ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
        ("<|object_ref_start|>", True), ("<|object_ref_end|>", True),
        ("<|box_start|>", True), ("<|box_end|>", True),
        ("<|quad_start|>", True), ("<|quad_end|>", True),
        ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
        ("<|image_pad|>", True), ("<|video_pad|>", True),
        # Qwen marks the tool / fill-in-the-middle / think tokens as not special, so
        # they survive skip_special_tokens=True.
        ("<tool_call>", False), ("</tool_call>", False),
        ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
        ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
        ("<tool_response>", False), ("</tool_response>", False),
        ("<think>", False), ("</think>", False),
        ("<|audio_start|>", True), ("<|audio_end|>", True),
        ("<tts_pad>", True), ("<tts_text_bos>", True), ("<tts_text_eod>", True),
        ("<tts_text_bos_single>", True),
        # The transcript markers must survive batch_decode(skip_special_tokens=True):
        # the official parser splits the raw output on "<asr_text>".
        ("<non_speech>", False),
        ("<|audio_pad|>", True),
    ]
    names += [(f"<blank{i}>", True) for i in range(1, 28)]
    names += [("<asr_text>", False), ("<timestamp>", False)]
    table = tuple((FIRST_SPECIAL_ID + i, content, special) for i, (content, special) in enumerate(names))
    assert table[-1][0] == TIMESTAMP_ID, table[-1]
    return table


#: (id, content, special) of every added token.
SPECIAL_TOKENS: tuple[tuple[int, str, bool], ...] = _special_token_table()
_SPECIAL_BY_ID = {i: c for i, c, _ in SPECIAL_TOKENS}
assert _SPECIAL_BY_ID[IM_START_ID] == "<|im_start|>"
assert _SPECIAL_BY_ID[AUDIO_START_ID] == "<|audio_start|>"
assert _SPECIAL_BY_ID[AUDIO_END_ID] == "<|audio_end|>"
assert _SPECIAL_BY_ID[NON_SPEECH_ID] == "<non_speech>"
assert _SPECIAL_BY_ID[AUDIO_PAD_ID] == "<|audio_pad|>"
assert _SPECIAL_BY_ID[ASR_TEXT_ID] == "<asr_text>"

#: Chat template (Jinja) of the processor.  For a system message holding the context and
#: a user message holding one audio item it renders
#: ``<|im_start|>system\n{ctx}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|>``
#: ``<|audio_end|><|im_end|>\n<|im_start|>assistant\n``.  Without a system message an
#: empty one is emitted, so the prompt always has the same shape.
CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] is not none -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part is string -%}"
    "{{- part -}}"
    "{%- elif part.get('type') == 'audio' or 'audio' in part or 'audio_url' in part -%}"
    "{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
    "{%- elif part.get('type') == 'text' or 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


# --------------------------------------------------------------------------------------
# Byte-level BPE tokenizer
# --------------------------------------------------------------------------------------

_QWEN2_SPLIT = QWEN2_SPLIT_PATTERN  # the split the checkpoints' tokenizer uses

# Text the merges are learned from: plain English and Chinese sentences of the kind a
# speech recogniser hears, plus the "language X" prefixes the model writes.
_TRAINING_TEXT = (
    "language English language Chinese language Japanese language Korean language None "
    "language German language French language Spanish language Cantonese\n"
    "The weather today is clear and warm, so we are going to walk to the station.\n"
    "Please tell me what time the meeting starts in the morning and where it will be.\n"
    "I think that this is one of the most interesting things that I have ever heard.\n"
    "She said that they would come back after the holiday with their children.\n"
    "Thank you very much for listening, and have a good evening everyone.\n"
    "We need to finish the report before Friday, otherwise the manager will not be happy.\n"
    "The train was late again, and there were a lot of people waiting on the platform.\n"
    "Can you hear me now? Let me know if the sound is too loud or too quiet.\n"
    "In the beginning there was only a small shop at the corner of the street.\n"
    "The results of the experiment show that the new method works better than the old one.\n"
    "He opened the window and looked at the mountains in the distance for a long time.\n"
    "It's not what you say, it's how you say it, and that's what they'll remember.\n"
    "One, two, three, four, five: the numbers 2024 and 1999 were read out loud.\n"
    "Good morning, this is the news at seven o'clock, and here are the main stories.\n"
    "The government announced a new plan to build more houses for young families.\n"
    "Scientists have found water on the surface of a distant planet.\n"
    "Our team played very well in the second half and won the match by two goals.\n"
    "If you have any questions about your order, please contact our customer service.\n"
    "The doctor told him to drink more water and to get some rest every afternoon.\n"
    "My brother is learning to play the piano, and he practices every single day.\n"
    "They were talking about the history of the city and the people who lived there.\n"
    "Turn left at the next traffic light, then go straight for about five hundred meters.\n"
    "The company reported that its sales increased by ten percent during the last quarter.\n"
    "When I was a child, we used to spend the summer at my grandmother's house.\n"
    "Speech recognition turns spoken words into written text, one sentence at a time.\n"
    "Remember to switch off the lights and to lock the door when you leave the office.\n"
    "The teacher asked the students to read the next chapter before the lesson on Monday.\n"
    "Would you like some coffee or tea? I'd like a cup of green tea, thank you.\n"
    "There is nothing more important than the health and happiness of the people you love.\n"
    "今天天气很好，我们一起去公园散步吧。\n"
    "请问会议几点开始？我们需要提前准备一下材料。\n"
    "这个方法比以前的方法更好，结果也更加准确。\n"
    "我觉得这是我听过的最有意思的事情之一。\n"
    "他们说假期以后会带着孩子一起回来。\n"
    "谢谢大家的收听，祝大家晚上愉快。\n"
    "火车又晚点了，站台上有很多人在等车。\n"
    "我们在学校学习中文和英文，也学习数学和历史。\n"
    "你现在能听到我说话吗？如果声音太大或者太小请告诉我。\n"
    "这是一个关于语音识别的测试，我们希望结果是对的。\n"
    "早上好，现在是七点钟新闻，下面是今天的主要内容。\n"
    "政府宣布了一个新的计划，为年轻的家庭建造更多的房子。\n"
    "我们的球队下半场踢得非常好，最后以两球赢得了比赛。\n"
    "如果您对订单有任何问题，请联系我们的客户服务中心。\n"
    "医生告诉他要多喝水，每天下午好好休息一下。\n"
    "我的弟弟正在学习弹钢琴，他每天都练习很长时间。\n"
    "在下一个红绿灯左转，然后一直往前走大约五百米。\n"
    "公司表示上个季度的销售额增长了百分之十。\n"
    "小时候我们常常在奶奶家里过暑假。\n"
    "语音识别把说出来的话变成文字，一句一句地写下来。\n"
    "离开办公室的时候请记得关灯和锁门。\n"
    "老师让学生们在星期一上课之前先读下一章。\n"
    "您想喝咖啡还是茶？我想要一杯绿茶，谢谢。\n"
    "没有什么比你所爱的人的健康和快乐更重要的了。\n"
)

_NUM_MERGES = 480


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the byte-level alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def _pretokenize(text: str) -> list[str]:
    """Split ``text`` the way Qwen2's tokenizer does before BPE."""
    from tokenizers import Regex, pre_tokenizers

    splitter = pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False)
    return [piece for piece, _ in splitter.pre_tokenize_str(text)]


def _learn_merges(text: str, num_merges: int, byte_map: dict[int, str]) -> list[tuple[str, str]]:
    """Plain BPE training (ties broken by the pair's text, so the result is deterministic)."""
    import unicodedata
    from collections import Counter

    words = Counter()
    for piece in _pretokenize(unicodedata.normalize("NFC", text)):
        words[tuple(byte_map[b] for b in piece.encode("utf-8"))] += 1
    vocab = dict(words)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for word, freq in vocab.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += freq
        if not pairs:
            break
        best_freq = max(pairs.values())
        if best_freq < 2:
            break
        best = min(p for p, f in pairs.items() if f == best_freq)
        merges.append(best)
        joined = best[0] + best[1]
        new_vocab = {}
        for word, freq in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            key = tuple(out)
            new_vocab[key] = new_vocab.get(key, 0) + freq
        vocab = new_vocab
    return merges


def _filler_strings(byte_map: dict[int, str], seed: int) -> Iterator[str]:
    """Decode-only tokens (no merge produces them) for the ids the merges leave free.

    Realistic first (ASCII pairs, whole 2-byte characters, whole CJK characters), then
    fragments: every remaining byte pair (lone UTF-8 lead and continuation bytes
    included), ASCII triples, and finally random byte triples.
    """
    enc = lambda bs: "".join(byte_map[b] for b in bs)  # noqa: E731
    printable = range(32, 127)
    for a in printable:
        for b in printable:
            yield enc((a, b))
    for cp in range(0x80, 0x800):
        yield enc(chr(cp).encode("utf-8"))
    for cp in range(0x4E00, 0xA000):
        yield enc(chr(cp).encode("utf-8"))
    for a in range(256):
        for b in range(256):
            yield enc((a, b))
    letters = b" abcdefghijklmnopqrstuvwxyz"
    for a in letters:
        for b in letters:
            for c in letters:
                yield enc((a, b, c))
    rng = random.Random(seed)
    while True:
        yield enc((rng.randrange(256), rng.randrange(256), rng.randrange(256)))


@functools.lru_cache(maxsize=1)
def _tokenizer_texts() -> tuple[str, str]:
    vocab, merges = build_tokenizer_files()
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    return json.dumps(vocab, ensure_ascii=False), "\n".join(lines) + "\n"


def build_tokenizer_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab covering ids 0..151642, merges) of the small byte-level BPE.

    The same for every checkpoint (the weights' seed does not change it).
    """
    byte_map = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for ch in byte_map.values():
        vocab[ch] = len(vocab)
    merges = _learn_merges(_TRAINING_TEXT, _NUM_MERGES, byte_map)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    for s in _filler_strings(byte_map, seed=0):
        if len(vocab) >= FIRST_SPECIAL_ID:
            break
        if s not in vocab:
            vocab[s] = len(vocab)
    assert len(vocab) == FIRST_SPECIAL_ID
    return vocab, merges


def build_tokenizer_config() -> dict:
    added = {
        str(i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, content, special in SPECIAL_TOKENS
    }
    multimodal = {
        "audio_bos_token": "<|audio_start|>",
        "audio_eos_token": "<|audio_end|>",
        "audio_token": "<|audio_pad|>",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [
            c for i, c, special in SPECIAL_TOKENS if special and i not in (ENDOFTEXT_ID,)
        ],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "extra_special_tokens": multimodal,
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        **multimodal,
    }


def write_tokenizer(out: pathlib.Path) -> None:
    vocab_text, merges_text = _tokenizer_texts()
    (out / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (out / "merges.txt").write_text(merges_text, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(build_tokenizer_config(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
