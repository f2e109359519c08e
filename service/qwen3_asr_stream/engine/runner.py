"""Execution: one batched update of several utterances on the model.

An update of an utterance computes only what is new:
1. the encoder runs on the open 8 s window (plus any window that completed since
   the last update, or that a moved log floor made stale);
2. the decoder appends the audio tokens of newly completed windows to the
   utterance's own cache, after the prompt head: that cache is reused by every
   later update;
3. the decoder runs the open window's audio tokens, the prompt tail and the text
   prefix on top of the cached head and completed windows (batched across
   utterances), then greedy steps; afterwards the cache is cut back to the head
   and completed windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..decoding import DEFAULT_EOS_IDS, END_OF_TEXT_ID, left_pad
from ..model.kv_cache import KVCache
from ..model.qwen3_asr import SpeechModel
from ..prompts import asr_prompt
from ..tokenizer import AUDIO_PAD, TextTokenizer
from ..transcript import parse_output
from .decode_graphs import DecodeGraphs
from .features import floor_features
from .options import PolicyOptions
from .policy import choose_prefix, record_interim, repetition_detected
from .utterance import UpdateResult, Utterance

MIN_SAMPLES = 400  # one STFT window: less audio than this gives no result


@dataclass
class _Work:
    utterance: Utterance
    is_final: bool
    audio: np.ndarray
    floor: float = 0.0
    open_raw: torch.Tensor | None = None
    commit_from: int = 0
    complete: int = 0
    encoder_frames: int = 0
    decoder_positions: int = 0
    reencoded: int = 0
    prefix: tuple[int, ...] = ()
    generated: list[int] | None = None


class ModelRunner:
    def __init__(self, model: SpeechModel, tokenizer: TextTokenizer, policy: PolicyOptions,
                 static_decode: bool | None = None) -> None:
        """``static_decode``: fixed-shape decode steps over preallocated batch caches, as CUDA
        graphs on a GPU (None: on CUDA only)."""
        if model.is_aligner:
            raise ValueError("the streaming engine needs an ASR checkpoint, got a forced aligner")
        if model.encoder.attention != "windowed":
            raise ValueError("the streaming engine needs the encoder's windowed attention")
        self.model = model
        self.tokenizer = tokenizer
        self.policy = policy
        self.dims = model.dims.audio
        self.audio_pad_id = tokenizer.token_id(AUDIO_PAD)
        if static_decode is None:
            static_decode = model.device.type == "cuda"
        self.graphs = DecodeGraphs(model) if static_decode else None

    # -- prompt pieces -------------------------------------------------------------------

    def head_ids(self, utterance: Utterance) -> list[int]:
        head, _ = asr_prompt(utterance.options.context, utterance.options.language)
        return self.tokenizer.encode(head)

    def tail_ids(self, utterance: Utterance) -> list[int]:
        _, tail = asr_prompt(utterance.options.context, utterance.options.language)
        return self.tokenizer.encode(tail)

    # -- one batched update ----------------------------------------------------------------

    @torch.inference_mode()
    def update(self, batch: list[tuple[Utterance, bool]]) -> list[UpdateResult]:
        started = time.perf_counter()
        works = [_Work(u, final, u.snapshot()) for u, final in batch]
        ready = [w for w in works if w.audio.shape[0] >= MIN_SAMPLES]
        window_tokens, open_tokens = self._encode(ready)
        self._commit_windows(ready, window_tokens)
        self._decode(ready, open_tokens)
        elapsed = time.perf_counter() - started
        return [self._result(w, elapsed) for w in works]

    def _encode(self, works: list[_Work]) -> tuple[dict[int, list[torch.Tensor]], dict[int, torch.Tensor]]:
        """Encode stale, newly completed and open windows of all utterances in one batch.

        Returns, by utterance id, the audio tokens of the windows to commit and those
        of the open window.
        """
        model = self.model
        pieces: list[torch.Tensor] = []
        owners: list[tuple[_Work, int | None]] = []  # (work, window index or None for the open one)
        for w in works:
            u = w.utterance
            open_raw, floor = u.features.update(w.audio)
            w.floor, w.open_raw = floor, open_raw
            w.complete = len(u.features.windows)
            stale = u.features.stale_from(floor)
            w.reencoded = max(0, u.committed_windows - stale)
            w.commit_from = min(stale, u.committed_windows)
            total_frames = u.features.frames(w.audio.shape[0])
            pad_to = model.encoder.chunk_padding(total_frames)
            for k in range(w.commit_from, w.complete):
                mel = floor_features(u.features.windows[k].raw, floor)
                pieces.append(torch.cat(model.encoder.embed_chunks(mel.to(model.device, model.dtype), pad_to)))
                owners.append((w, k))
                w.encoder_frames += mel.shape[1]
            if open_raw.shape[1]:
                mel = floor_features(open_raw, floor)
                pieces.append(torch.cat(model.encoder.embed_chunks(mel.to(model.device, model.dtype), pad_to)))
                owners.append((w, None))
                w.encoder_frames += mel.shape[1]
        window_tokens: dict[int, list[torch.Tensor]] = {}
        open_tokens: dict[int, torch.Tensor] = {}
        if not pieces:
            return window_tokens, open_tokens
        for (w, k), out in zip(owners, model.encoder.encode_windows(pieces)):
            if k is None:
                open_tokens[w.utterance.id] = out
            else:
                window_tokens.setdefault(w.utterance.id, []).append(out)
        return window_tokens, open_tokens

    def _commit_windows(self, works: list[_Work], window_tokens: dict[int, list[torch.Tensor]]) -> None:
        """Append the head (first time) and newly completed windows to each utterance's cache."""
        model = self.model
        for w in works:
            u = w.utterance
            windows = window_tokens.get(u.id, [])
            ids: list[int] = []
            if u.cache is None:
                head = self.head_ids(u)
                ids = head
                u.head_length = len(head)
                u.cache = model.new_cache(1, len(head) + 4 * self.dims.window_tokens)
            else:
                u.cache.truncate(u.head_length + w.commit_from * self.dims.window_tokens)
            audio = torch.cat(windows) if windows else None
            if audio is not None:
                ids = ids + [self.audio_pad_id] * audio.shape[0]
            if ids:
                tensor = torch.tensor([ids], device=model.device)
                embeds = model.embed(tensor, [audio])
                model.decoder(embeds, u.cache)
                w.decoder_positions += len(ids)
            u.committed_windows = w.complete
            for window in u.features.windows:
                window.floor_used = w.floor

    def _decode(self, works: list[_Work], open_tokens: dict[int, torch.Tensor]) -> None:
        if not works:
            return
        model, policy = self.model, self.policy
        rows: list[list[int]] = []
        audio: list[torch.Tensor | None] = []
        for w in works:
            u = w.utterance
            open_audio = open_tokens.get(u.id)
            w.prefix = () if w.is_final else tuple(choose_prefix(u.hypothesis, policy, self.tokenizer))
            n_open = 0 if open_audio is None else open_audio.shape[0]
            rows.append([self.audio_pad_id] * n_open + self.tail_ids(u) + list(w.prefix))
            audio.append(open_audio)
        max_new = max(policy.max_tokens_final if w.is_final else policy.max_tokens_per_update for w in works)
        caches = [w.utterance.cache for w in works]
        for w, row in zip(works, rows):
            w.decoder_positions += len(row)
        if self.graphs is not None:
            slots = max(c.cursor for c in caches) + max(len(r) for r in rows) + max_new
            cache = self.graphs.batch_cache(len(works), slots)
            KVCache.stack(caches, max(len(r) for r in rows) + max_new, into=cache)
            padding = cache.batch - len(works)
            ids, valid = left_pad(rows + [[]] * padding)
            ids, valid = ids.to(model.device), valid.to(model.device)
            logits = model(model.embed(ids, audio + [None] * padding), cache, valid)[: len(works)]

            def step(tokens: torch.Tensor) -> torch.Tensor:
                return self.graphs.step(cache, tokens)[: len(works)]
        else:
            ids, valid = left_pad(rows)
            ids, valid = ids.to(model.device), valid.to(model.device)
            if len(works) == 1:
                cache = caches[0]
                cache.reserve(ids.shape[1] + max_new)
            else:
                cache = KVCache.stack(caches, ids.shape[1] + max_new)
            logits = model(model.embed(ids, audio), cache, valid)

            def step(tokens: torch.Tensor) -> torch.Tensor:
                cache.reserve(1)
                return model(model.embed(tokens[:, None]), cache)
        self._greedy(works, logits, step, max_new)
        for w in works:
            w.utterance.cache.truncate(w.utterance.stable_slots())

    def _greedy(self, works: list[_Work], logits: torch.Tensor, feed_token, max_new: int) -> None:
        """Greedy tokens per row; ``feed_token(tokens (rows,)) -> logits (rows, vocab)`` runs one step."""
        policy = self.policy
        limits = [policy.max_tokens_final if w.is_final else policy.max_tokens_per_update for w in works]
        outputs: list[list[int]] = [[] for _ in works]
        done = [False] * len(works)
        for step in range(max_new):
            tokens = logits.argmax(dim=-1).tolist()
            for i, token in enumerate(tokens):
                if done[i]:
                    continue
                if token in DEFAULT_EOS_IDS:
                    done[i] = True
                    continue
                outputs[i].append(token)
                history = list(works[i].prefix) + outputs[i]
                size = repetition_detected(history, policy.repetition_limit, policy.max_pattern_tokens)
                if size:
                    # Keep one copy of the repeated pattern and stop: a decoding loop.
                    del outputs[i][max(0, len(outputs[i]) - size * (policy.repetition_limit - 1)) :]
                    done[i] = True
                elif len(outputs[i]) >= limits[i]:
                    done[i] = True
            if all(done) or step == max_new - 1:
                break
            feed = torch.tensor([END_OF_TEXT_ID if done[i] else tokens[i] for i in range(len(works))],
                                device=self.model.device)
            logits = feed_token(feed)
            for i, w in enumerate(works):
                if not done[i]:
                    w.decoder_positions += 1
        for w, out in zip(works, outputs):
            w.generated = out

    def _result(self, w: _Work, elapsed: float) -> UpdateResult:
        u = w.utterance
        generated = w.generated or []
        tokens = list(w.prefix) + generated
        if not w.is_final and w.generated is not None:
            record_interim(u.hypothesis, list(w.prefix), generated)
        language = u.options.language
        parsed = parse_output(self.tokenizer.decode(tokens), language)
        stable = parse_output(self.tokenizer.decode(list(w.prefix)), language).text if w.prefix else ""
        if not parsed.text.startswith(stable):
            stable = ""
        return UpdateResult(
            utterance_id=u.id,
            is_final=w.is_final,
            language=parsed.language,
            text=parsed.text,
            stable_text=stable,
            tokens=tuple(tokens),
            prefix_tokens=len(w.prefix),
            audio_samples=w.audio.shape[0],
            encoder_frames=w.encoder_frames,
            decoder_positions=w.decoder_positions,
            windows_reencoded=w.reencoded,
            compute_s=elapsed,
        )

