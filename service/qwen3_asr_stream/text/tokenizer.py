"""The checkpoint's own tokenizer through the ``tokenizers`` library.

``tokenizer.json`` is used when the folder has one. Otherwise (the published
Qwen3-ASR repos ship ``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json``)
the byte-level BPE pipeline of the Qwen2 tokenizer is assembled here: NFC
normalisation, the Qwen2 split pattern, byte-level mapping, and the added tokens
of ``tokenizer_config.json`` at exactly their ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer

# The Qwen2 pre-tokenizer pattern (contractions, letters, single digits, punctuation, spaces).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
AUDIO_START = "<|audio_start|>"
AUDIO_END = "<|audio_end|>"
AUDIO_PAD = "<|audio_pad|>"
ASR_TEXT = "<asr_text>"
TIMESTAMP = "<timestamp>"


class TokenizerError(RuntimeError):
    pass


def _assemble_from_vocab(folder: Path) -> str:
    """A tokenizer.json document for a Qwen2 byte-level BPE folder."""
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = []
    for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        left, _, right = line.partition(" ")
        merges.append([left, right])
    config = _read_tokenizer_config(folder)
    added = []
    for token_id, spec in sorted(config.get("added_tokens_decoder", {}).items(), key=lambda kv: int(kv[0])):
        added.append(
            {
                "id": int(token_id),
                "content": spec["content"],
                "single_word": bool(spec.get("single_word", False)),
                "lstrip": bool(spec.get("lstrip", False)),
                "rstrip": bool(spec.get("rstrip", False)),
                "normalized": bool(spec.get("normalized", False)),
                "special": bool(spec.get("special", False)),
            }
        )
    document = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
                {
                    "type": "ByteLevel",
                    "add_prefix_space": bool(config.get("add_prefix_space", False)),
                    "trim_offsets": False,
                    "use_regex": False,
                },
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    return json.dumps(document)


def _read_tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _byte_level_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character of each byte (GPT-2's table), reversed."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in kept:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


_BYTE_OF = _byte_level_decoder()


class TextTokenizer:
    """Encode prompts, decode generated ids; ids of the special tokens by name."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        added = tokenizer.get_added_tokens_decoder()
        self.special_ids = frozenset(token_id for token_id, token in added.items() if token.special)
        self._added = {token_id: token.content for token_id, token in added.items()}

    @classmethod
    def from_folder(cls, folder: str | Path) -> "TextTokenizer":
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")))
        missing = [name for name in ("vocab.json", "merges.txt") if not (folder / name).is_file()]
        if missing:
            raise TokenizerError(
                f"{folder} has no tokenizer.json and lacks {', '.join(missing)}: the tokenizer files are missing"
            )
        return cls(Tokenizer.from_str(_assemble_from_vocab(folder)))

    def token_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"the tokenizer has no token {token!r}")
        return token_id

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; special tokens written in the text become their ids."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (part of a character for some byte-level tokens); none
        for an id the tokenizer lacks (the model's embedding is padded past the vocabulary, and
        ``decode`` skips such ids too)."""
        if token_id in self._added:
            return self._added[token_id].encode()
        piece = self._tok.id_to_token(token_id)
        return b"" if piece is None else bytes(_BYTE_OF[ch] for ch in piece)

    def end_of_text_ids(self) -> tuple[int, ...]:
        """Ids that end a transcript: the checkpoint's ``<|im_end|>`` and ``<|endoftext|>``."""
        return (self.token_id(IM_END), self.token_id(END_OF_TEXT))

    @property
    def pad_id(self) -> int:
        """The checkpoint's padding id (``<|endoftext|>``, as the official generation config)."""
        return self.token_id(END_OF_TEXT)

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_ids


class IncrementalDetokenizer:
    """Text of a growing token sequence that never shows a broken UTF-8 character.

    Byte-level BPE tokens can end in the middle of a multi-byte character; the text
    of such a prefix ends in U+FFFD. ``push`` holds those bytes back until the
    character is complete, then returns only the new text.
    """

    def __init__(self, tokenizer: TextTokenizer, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._emitted = 0  # characters of decode(self._ids) already returned

    @property
    def text(self) -> str:
        """All text returned so far."""
        return self._tok.decode(self._ids, self._skip)[: self._emitted]

    def push(self, ids: Iterable[int]) -> str:
        """Add token ids; return the newly completed text ('' when a character is still open)."""
        self._ids.extend(ids)
        full = self._tok.decode(self._ids, self._skip)
        complete = len(full)
        # Hold back a trailing replacement character: the next token may complete it.
        while complete > self._emitted and full[complete - 1] == "\ufffd":
            complete -= 1
        new = full[self._emitted : complete]
        self._emitted = complete
        return new

    def flush(self) -> str:
        """Whatever remains at the end, replacement characters included."""
        full = self._tok.decode(self._ids, self._skip)
        new = full[self._emitted :]
        self._emitted = len(full)
        return new
