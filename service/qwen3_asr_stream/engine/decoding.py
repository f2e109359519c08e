"""The one greedy decoding loop: offline transcription and the streaming engine.

Each row runs its new input positions (prompt pieces, a text prefix) and optionally a
draft (tokens it probably continues with) in one prefill on its own cache. Greedy
decoding then reads the argmax at every draft position: the longest run of draft tokens
that greedy decoding itself produces is kept (their cache slots stay), the cache is cut
back after them, and plain one-token steps continue from the first disagreement. The
tokens are those of decoding without a draft in float32 (the tests check it). In
bfloat16 the rounding of a prefill and of a one-token step differ slightly, so a near-tie
can flip, as batching can; with int8 weights the activations are quantized per call over
all positions, so a draft changes the scales of the whole prefill and the tokens can
differ more often (measured: a fully right draft rejected at its first token at 20 s).
Key terms (``DecodeRow.bias``, engine/bias.py) change the pick at each position, in the
prefill's draft verification and in the steps alike (the log-probability is the model's for
the token picked). Stop rules (``StopRules``): end-of-text ids (from the checkpoint's tokenizer), a token
bound and a repetition guard.

Every output token comes with its log-probability under the model (float32 log-softmax
of the logits greedy decoding read it from: a draft position's in the prefill, else a
step's), so a draft changes which pass computed it, not what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch

from ..model.kv_cache import RowCache
from ..model.qwen3_asr import SpeechModel
from .bias import TermBias

def check_repetition_guard(repetition_limit: int, max_pattern_tokens: int) -> None:
    """The repetition guard's settings (``StopRules``, ``PolicyOptions``); raises ValueError."""
    if repetition_limit < 0 or repetition_limit == 1:
        raise ValueError("repetition_limit must be 0 (off) or at least 2")
    if max_pattern_tokens < 1:
        raise ValueError("max_pattern_tokens must be at least 1")


@dataclass(frozen=True)
class StopRules:
    """When a row's greedy decoding stops (offline transcription and the streaming engine).

    ``end_ids`` come from the checkpoint's tokenizer (``TextTokenizer.end_of_text_ids()``).
    """

    end_ids: tuple[int, ...]  # a row stops before any of these
    max_tokens: int  # at most this many output tokens
    repetition_limit: int = 0  # stop when a pattern repeats this many times (0 = off); one copy is kept
    max_pattern_tokens: int = 8  # longest pattern the repetition guard looks for

    def __post_init__(self) -> None:
        if not self.end_ids:
            raise ValueError("end_ids must name at least one end-of-text token")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        check_repetition_guard(self.repetition_limit, self.max_pattern_tokens)


def repetition_detected(tokens: Sequence[int], limit: int, max_pattern: int) -> int:
    """Length of a pattern repeated ``limit`` times at the end of ``tokens``, else 0."""
    if limit < 2:
        return 0
    tokens = list(tokens)
    for size in range(1, max_pattern + 1):
        span = size * limit
        if len(tokens) < span:
            break
        pattern = tokens[-size:]
        if all(tokens[-span + i * size : -span + (i + 1) * size] == pattern for i in range(limit - 1)):
            return size
    return 0


@dataclass
class DecodeRow:
    """One sequence to decode; ``tokens``, ``accepted`` and ``positions`` are filled in."""

    cache: RowCache
    ids: Sequence[int]  # new input positions after what the cache holds (at least one)
    stop: StopRules
    audio: torch.Tensor | None = None  # (k, hidden) for the k audio placeholders in ``ids``
    history: Sequence[int] = ()  # tokens the repetition guard sees before the output (a prefix in ``ids``)
    draft: Sequence[int] = ()  # the expected continuation, verified in the prefill
    bias: TermBias | None = None  # key terms that steer the greedy pick (engine/bias.py)
    tokens: list[int] = field(default_factory=list)  # output, without the end-of-text token
    logprobs: list[float] = field(default_factory=list)  # log-probability of each of ``tokens``
    accepted: int = 0  # draft tokens kept
    positions: int = 0  # decoder positions run for this row (prefill and steps)
    done: bool = False

    def pick(self, logits: torch.Tensor, greedy: int, logprob: float) -> tuple[int, float]:
        """The next token and its log-probability: ``greedy`` (the argmax of ``logits`` (vocab,)),
        or the key terms' pick."""
        if self.bias is None:
            return greedy, logprob
        token = self.bias.pick(logits, [*self.history, *self.tokens])
        if token == greedy:
            return greedy, logprob
        return token, float(torch.log_softmax(logits.float(), dim=-1)[token])

    def take(self, token: int, logprob: float) -> bool:
        """Apply the stop rules to the next greedy token (and its log-probability); False once the
        row is done."""
        rules = self.stop
        if token in rules.end_ids:
            self.done = True
            return False
        self.tokens.append(token)
        self.logprobs.append(logprob)
        size = repetition_detected(list(self.history) + self.tokens, rules.repetition_limit, rules.max_pattern_tokens)
        if size:
            # Keep one copy of the repeated pattern and stop: a decoding loop.
            cut = max(0, len(self.tokens) - size * (rules.repetition_limit - 1))
            del self.tokens[cut:], self.logprobs[cut:]
            self.done = True
        elif len(self.tokens) >= rules.max_tokens:
            self.done = True
        return not self.done


class Stepper(Protocol):
    """Runs one-token decode steps for some rows of a batch."""

    def begin(self, rows: list[DecodeRow]) -> None: ...

    def step(self, active: list[int], tokens: list[int]) -> torch.Tensor:
        """Feed ``tokens[i]`` to row ``active[i]``; returns ``(len(active), vocab)`` logits."""
        ...


class EagerStepper:
    """Steps on the rows' own caches; only the rows still decoding run."""

    def __init__(self, model: SpeechModel) -> None:
        self.model = model
        self.rows: list[DecodeRow] = []

    def begin(self, rows: list[DecodeRow]) -> None:
        self.rows = rows

    def step(self, active: list[int], tokens: list[int]) -> torch.Tensor:
        model = self.model
        ids = torch.tensor(tokens, device=model.device)[:, None]
        caches = [self.rows[i].cache for i in active]
        hidden = model.decoder.forward_rows(model.embed(ids), caches, [1] * len(active))
        return model.head(hidden[:, 0])


def greedy_pick(logits: torch.Tensor) -> tuple[list[int], list[float]]:
    """The argmax token of each row of ``(n, vocab)`` logits and its log-probability (float32)."""
    tokens = logits.argmax(dim=-1)
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens[:, None])[:, 0]
    return tokens.tolist(), logprobs.tolist()


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """``(batch, longest)`` ids padded on the right."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, longest)`` ids and the matching valid mask, padded on the left (batch caches)."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    valid = torch.zeros(len(rows), longest, dtype=torch.bool)
    for i, row in enumerate(rows):
        if row:
            ids[i, longest - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            valid[i, longest - len(row) :] = True
    return ids, valid


@torch.inference_mode()
def decode(model: SpeechModel, rows: list[DecodeRow], stepper: Stepper | None = None) -> list[DecodeRow]:
    """Greedy-decode every row (prefill with draft verification, then one-token steps)."""
    if not rows:
        return rows
    pad_id = 0  # right padding: computed, never stored or attended, so any valid id
    inputs = [list(r.ids) + list(r.draft) for r in rows]
    for r, row_input in zip(rows, inputs):
        if not r.ids:
            raise ValueError("a decode row needs at least one input position")
        r.positions += len(row_input)
    ids = right_pad(inputs, pad_id).to(model.device)
    bases = [r.cache.length for r in rows]
    hidden = model.decoder.forward_rows(
        model.embed(ids, [r.audio for r in rows]), [r.cache for r in rows], [len(x) for x in inputs])
    # Logits where greedy decoding reads them: after the last input and after each draft token.
    row_index = [j for j, r in enumerate(rows) for _ in range(len(r.draft) + 1)]
    pos_index = [len(r.ids) - 1 + i for r in rows for i in range(len(r.draft) + 1)]
    logits = model.head(hidden[row_index, pos_index])
    greedy, scores = greedy_pick(logits)

    pending: dict[int, int] = {}  # row -> token to feed next
    at = 0
    for j, r in enumerate(rows):
        first = at
        guesses = zip(greedy[at : at + len(r.draft) + 1], scores[at : at + len(r.draft) + 1])
        at += len(r.draft) + 1
        for i, (token, logprob) in enumerate(guesses):
            token, logprob = r.pick(logits[first + i], token, logprob)
            matches = i < len(r.draft) and token == r.draft[i]
            alive = r.take(token, logprob)
            if matches and token not in r.stop.end_ids:
                r.accepted = min(r.accepted + 1, len(r.tokens))  # (the repetition guard may cut)
            if not alive:
                break
            if matches:
                continue
            pending[j] = token  # the first token after the accepted draft: not in the cache yet
            break
        r.cache.truncate(bases[j] + len(r.ids) + r.accepted)

    stepper = stepper or EagerStepper(model)
    if pending:
        stepper.begin(rows)
    while pending:
        active = sorted(pending)
        logits = stepper.step(active, [pending[j] for j in active])
        tokens, logprobs = greedy_pick(logits)
        pending = {}
        for k, (j, token, logprob) in enumerate(zip(active, tokens, logprobs)):
            token, logprob = rows[j].pick(logits[k], token, logprob)
            rows[j].positions += 1
            if rows[j].take(token, logprob):
                pending[j] = token
    return rows


def greedy_generate(
    model: SpeechModel,
    prompts: Sequence[Sequence[int]],
    audio: Sequence[torch.Tensor | None],
    stop: StopRules,
    bias: TermBias | None = None,
) -> list[list[int]]:
    """Greedy tokens per prompt, each up to (not including) its end-of-text token."""
    rows = [DecodeRow(model.new_row_cache(len(p) + stop.max_tokens), p, stop, a, bias=bias)
            for p, a in zip(prompts, audio)]
    return [r.tokens for r in decode(model, rows)]
