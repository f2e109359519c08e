"""Memory: what a configuration needs, and the ledger that admits utterances against the budget.

Each utterance gets one :class:`RowCache` of a fixed capacity, allocated once (on
its first update) and never grown: its prompt, the audio tokens of
``max_utterance_s`` of audio, and the text room of a final (or of an interim with its
prefix). The fixed-shape decode steps (CUDA graphs) add one staging batch cache,
allocated at start. The budget counts exactly these bytes; :func:`engine_memory` is
the same arithmetic as a pure function of the model's dimensions (no engine needed).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.config import ModelDims
from ..audio.frontend import HOP_LENGTH, SAMPLE_RATE
from .options import EngineOptions, PolicyOptions

GRAPH_LENGTH_STEP = 256  # fixed-shape decode steps attend over 256, 512, 1024, ... slots


class KVBudgetExceeded(RuntimeError):
    """Admitting the utterance would take more cache memory than the budget."""


def kv_bytes_per_token(dims: ModelDims, element_size: int) -> int:
    """Keys and values of every decoder layer for one position."""
    text = dims.text
    return 2 * text.num_hidden_layers * text.num_key_value_heads * text.head_dim * element_size


def audio_tokens(dims: ModelDims, seconds: float) -> int:
    """Encoder tokens of ``seconds`` of audio (exact: 13 per 100 mel frames and the partial tail)."""
    return dims.audio.output_length(int(seconds * SAMPLE_RATE) // HOP_LENGTH)


def text_slots(policy: PolicyOptions) -> int:
    """Room after the prompt for text: a final's tokens, or an interim's prefix plus its new tokens."""
    return policy.max_tokens_final + policy.max_tokens_per_update


def utterance_slots(dims: ModelDims, options: EngineOptions, prompt_tokens: int) -> int:
    """Cache capacity of one utterance whose prompt (head and tail) has ``prompt_tokens`` ids."""
    return prompt_tokens + audio_tokens(dims, options.max_utterance_s) + text_slots(options.policy)


def graph_shapes(options: EngineOptions, longest: int) -> tuple[list[int], list[int]]:
    """The (rows, slots) buckets of the fixed-shape decode steps: powers of two up to
    ``max_batch`` rows, multiples of 256 slots doubling up to ``longest``."""
    rows = [1]
    while rows[-1] < options.max_batch:
        rows.append(rows[-1] * 2)
    lengths = [GRAPH_LENGTH_STEP]
    while lengths[-1] < longest:
        lengths.append(lengths[-1] * 2)
    return rows, lengths


@dataclass(frozen=True)
class EngineMemory:
    bytes_per_token: int
    utterance_slots: int  # for the prompt length asked about
    graph_rows: int  # staging batch cache of the fixed-shape steps (0 rows when off)
    graph_slots: int

    @property
    def utterance_bytes(self) -> int:
        return self.utterance_slots * self.bytes_per_token

    @property
    def graph_bytes(self) -> int:
        return self.graph_rows * self.graph_slots * self.bytes_per_token

    def budget_for(self, utterances: int) -> int:
        """The budget that admits ``utterances`` such utterances beside the staging cache."""
        return self.graph_bytes + utterances * self.utterance_bytes


def engine_memory(dims: ModelDims, element_size: int, options: EngineOptions, prompt_tokens: int,
                  static_decode: bool) -> EngineMemory:
    """Decoder cache memory of a configuration (pure arithmetic, the same the engine allocates)."""
    slots = utterance_slots(dims, options, prompt_tokens)
    rows, lengths = graph_shapes(options, slots) if static_decode else ([0], [0])
    return EngineMemory(kv_bytes_per_token(dims, element_size), slots, rows[-1], lengths[-1])


class KVLedger:
    """The ledger of utterance cache reservations against a byte budget (thread-safe under the caller's lock)."""

    def __init__(self, budget_bytes: int, bytes_per_token: int, fixed_bytes: int = 0) -> None:
        if fixed_bytes > budget_bytes:
            raise ValueError(f"the decoder cache budget ({budget_bytes >> 20} MiB) is smaller than the "
                             f"fixed-shape decode staging cache ({fixed_bytes >> 20} MiB)")
        self.budget_bytes = budget_bytes
        self.bytes_per_token = bytes_per_token
        self.fixed_bytes = fixed_bytes
        self._slots: dict[int, int] = {}

    @property
    def reserved_bytes(self) -> int:
        return self.fixed_bytes + sum(self._slots.values()) * self.bytes_per_token

    def reserve(self, key: int, slots: int) -> None:
        need = slots * self.bytes_per_token
        if self.reserved_bytes + need > self.budget_bytes:
            raise KVBudgetExceeded(
                f"decoder cache budget of {self.budget_bytes >> 20} MiB is taken by {len(self._slots)} "
                f"utterances ({self.reserved_bytes >> 20} MiB reserved, this one needs {need >> 20} MiB)")
        self._slots[key] = slots

    def release(self, key: int) -> None:
        self._slots.pop(key, None)
