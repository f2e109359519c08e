"""The streaming engine as the server uses it: the text layer over the token-level core.

This layer owns the tokenizer: it builds each utterance's prompt ids from its
language and context, gives the core the checkpoint's end-of-text ids, and turns the
core's token results into text (:class:`UpdateResult`). The core (``core.py``:
scheduling, admission, the worker thread; ``runner.py``: the model) sees token ids only.

Stable text, as clients see it: an interim's ``stable_text`` is the text of the prefix
its update decoded from, but only once it extends the stable text shown before; so
every interim's ``stable_text`` starts with the previous one's, and its ``text``
starts with its ``stable_text``, also when the transcript parser collapses
repetitions (an interim whose parsed text would not start with the stable text shows
only the stable text). A final decodes the whole utterance afresh, as offline
transcription does: it may differ from the last interim anywhere, the stable text
included, and its ``stable_text`` is empty (all of it is final).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from ..model.qwen3_asr import SpeechModel
from ..text.prompts import asr_prompt_ids
from ..text.confidence import transcript_tokens
from ..text.tokenizer import TextTokenizer
from ..text.transcript import ASR_TEXT_TAG, parse_output
from .core import EngineClosed, EngineCore, EngineFull, EngineStats, UnknownUtterance
from .bias import TermBias
from .kv_ledger import EngineMemory, engine_memory
from .options import EngineOptions, UtteranceOptions
from .utterance import TokenResult, UpdateResult, UtteranceSpec

__all__ = ["StreamingEngine", "EngineFull", "EngineClosed", "EngineStats", "UnknownUtterance", "memory_needed"]

ResultCallback = Callable[[UpdateResult], None]


def memory_needed(model: SpeechModel, tokenizer: TextTokenizer, options: EngineOptions,
                  context: str = "", language: str | None = None) -> EngineMemory:
    """Decoder cache memory of a configuration, per utterance with this prompt (pure: no engine)."""
    head, tail = asr_prompt_ids(tokenizer, context, language)
    static = options.static_decode if options.static_decode is not None else model.device.type == "cuda"
    element = model.thinker.model.embed_tokens.weight.element_size()
    return engine_memory(model.dims, element, options, len(head) + len(tail), static)


def term_bias(tokenizer: TextTokenizer, terms, boost: float) -> TermBias | None:
    """The trie of the terms' token sequences, as spelled and after a space (mid-sentence)."""
    if not terms:
        return None
    return TermBias.from_sequences([tokenizer.encode(variant) for term in terms
                                    for variant in (term.strip(), " " + term.strip())], boost)


@dataclass
class _TextState:
    language: str | None
    stable: str = ""  # the stable text shown so far


class StreamingEngine:
    def __init__(self, model: SpeechModel, tokenizer: TextTokenizer, options: EngineOptions = EngineOptions()) -> None:
        self.tokenizer = tokenizer
        self.core = EngineCore(model, options, tokenizer.end_of_text_ids(), self._whole_characters)
        self._lock = threading.Lock()
        self._tag_id = tokenizer.token_id(ASR_TEXT_TAG)

    @property
    def options(self) -> EngineOptions:
        return self.core.options

    @property
    def model(self) -> SpeechModel:
        return self.core.model

    @property
    def runner(self):
        return self.core.runner

    @property
    def kv_bytes_per_utterance(self) -> int:
        """Cache bytes of an utterance without context (one with context takes more)."""
        return memory_needed(self.model, self.tokenizer, self.options).utterance_bytes

    def _whole_characters(self, ids) -> bool:
        return not self.tokenizer.decode(list(ids)).endswith("\ufffd")

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "StreamingEngine":
        self.core.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        self.core.close(timeout)

    def __enter__(self) -> "StreamingEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- utterances (any thread) ---------------------------------------------------------------

    def open(self, options: UtteranceOptions, callback: ResultCallback) -> int:
        """Admit a new utterance; raises :class:`EngineFull` when there is no room."""
        head, tail = asr_prompt_ids(self.tokenizer, options.context, options.language)
        spec = UtteranceSpec(head, tail, options.interim_results, options.update_interval_s,
                             term_bias(self.tokenizer, options.key_terms, options.term_boost))
        state = _TextState(options.language)
        return self.core.open(spec, lambda result: callback(self._text_result(state, result)))

    def push(self, utterance_id: int, samples: np.ndarray) -> None:
        self.core.push(utterance_id, samples)

    def request_interim(self, utterance_id: int) -> None:
        self.core.request_interim(utterance_id)

    def finish(self, utterance_id: int) -> None:
        self.core.finish(utterance_id)

    def cancel(self, utterance_id: int) -> None:
        self.core.cancel(utterance_id)

    def stats(self) -> EngineStats:
        return self.core.stats()

    # -- token results to text ---------------------------------------------------------------

    def _text_result(self, state: _TextState, r: TokenResult) -> UpdateResult:
        scored = ()
        if r.error:
            language, text, stable = "", "", ""
        else:
            language, text, stable = text_of(self.tokenizer, state, r)
            # Every token has its log-probability (an interim's prefix from the update that decoded it).
            tok = self.tokenizer
            scored = transcript_tokens(r.tokens, r.logprobs, tag_id=self._tag_id,
                                       forced_language=bool(state.language), is_special=tok.is_special,
                                       token_bytes=tok.token_bytes)
        token_fields = {f.name: getattr(r, f.name) for f in fields(r)}
        return UpdateResult(**token_fields, language=language, text=text, stable_text=stable,
                            transcript_tokens=scored)


def text_of(tokenizer: TextTokenizer, state: _TextState, r: TokenResult) -> tuple[str, str, str]:
    """(language, text, stable text) of a token result; updates ``state`` (interims only)."""
    parsed = parse_output(tokenizer.decode(list(r.tokens)), state.language)
    if r.is_final:
        return parsed.language, parsed.text, ""
    text = parsed.text
    if not text.startswith(state.stable):
        text = state.stable  # never take back what was shown as stable
    prefix = r.tokens[: r.prefix_tokens]
    candidate = parse_output(tokenizer.decode(list(prefix)), state.language).text if prefix else ""
    if candidate.startswith(state.stable) and text.startswith(candidate):
        state.stable = candidate
    return parsed.language, text, state.stable
