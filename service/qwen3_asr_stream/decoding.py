"""Greedy decoding of a batch of prompts with the explicit KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .model.kv_cache import KVCache
from .model.qwen3_asr import SpeechModel

END_OF_TEXT_ID = 151643
IM_END_ID = 151645
DEFAULT_EOS_IDS = (IM_END_ID, END_OF_TEXT_ID)


@dataclass(frozen=True)
class GreedyOptions:
    max_new_tokens: int = 512
    eos_ids: tuple[int, ...] = DEFAULT_EOS_IDS

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not self.eos_ids:
            raise ValueError("eos_ids must name at least one end-of-text token")


def left_pad(rows: Sequence[Sequence[int]], pad_id: int = END_OF_TEXT_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, longest)`` ids and the matching valid mask, padded on the left."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    valid = torch.zeros(len(rows), longest, dtype=torch.bool)
    for i, row in enumerate(rows):
        if row:
            ids[i, longest - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            valid[i, longest - len(row) :] = True
    return ids, valid


@torch.inference_mode()
def prefill(
    model: SpeechModel,
    prompts: Sequence[Sequence[int]],
    audio: Sequence[torch.Tensor | None],
    extra_capacity: int,
    cache: KVCache | None = None,
) -> tuple[torch.Tensor, KVCache]:
    """Run the prompts (left-padded) and return last-position logits ``(batch, vocab)`` and the cache."""
    ids, valid = left_pad(prompts)
    ids, valid = ids.to(model.device), valid.to(model.device)
    if cache is None:
        cache = model.new_cache(len(prompts), ids.shape[1] + extra_capacity)
    embeds = model.embed(ids, list(audio))
    logits = model(embeds, cache, valid)
    return logits, cache


@torch.inference_mode()
def greedy_continue(
    model: SpeechModel, logits: torch.Tensor, cache: KVCache, options: GreedyOptions
) -> list[list[int]]:
    """Greedy tokens after a prefill, each row up to (not including) its end-of-text token."""
    batch = logits.shape[0]
    eos = torch.tensor(options.eos_ids, device=logits.device)
    done = torch.zeros(batch, dtype=torch.bool, device=logits.device)
    steps: list[torch.Tensor] = []
    for step in range(options.max_new_tokens):
        token = logits.argmax(dim=-1)
        token = torch.where(done, torch.full_like(token, END_OF_TEXT_ID), token)
        steps.append(token)
        done = done | torch.isin(token, eos)
        if bool(done.all()) or step == options.max_new_tokens - 1:
            break
        cache.reserve(1)
        embeds = model.embed(token[:, None])
        logits = model(embeds, cache)
    table = torch.stack(steps, dim=1).tolist()
    out: list[list[int]] = []
    for row in table:
        tokens: list[int] = []
        for t in row:
            if t in options.eos_ids:
                break
            tokens.append(t)
        out.append(tokens)
    return out


def greedy_generate(
    model: SpeechModel,
    prompts: Sequence[Sequence[int]],
    audio: Sequence[torch.Tensor | None],
    options: GreedyOptions = GreedyOptions(),
) -> list[list[int]]:
    logits, cache = prefill(model, prompts, audio, options.max_new_tokens)
    return greedy_continue(model, logits, cache, options)
