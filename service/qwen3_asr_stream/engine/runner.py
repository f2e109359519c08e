"""Execution: one batched update of several utterances on the model (token ids only).

An update of an utterance computes only what is new:
1. the encoder runs on the open 8 s window (plus any window that completed since
   the last update, or that a moved log floor made stale);
2. one decoding loop (``decoding.decode``, batched across utterances, each row on its
   own cache) runs, in one prefill, the audio tokens of newly completed windows (the
   prompt head first, the first time), the open window's audio tokens, the prompt
   tail, the text prefix and a draft (the rest of the last hypothesis), keeps the
   draft tokens greedy decoding confirms, and continues greedy from the first
   disagreement;
3. the cache is cut back to the head and the completed windows: those slots are
   reused by every later update. (:meth:`ModelRunner.commit` appends completed
   windows alone, between updates, so that the next update does not pay for them.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from .decoding import DecodeRow, StopRules, decode, right_pad
from ..audio.frontend import N_FFT, scale_log_mel
from ..model.kv_cache import RowCache
from ..model.qwen3_asr import SpeechModel
from .decode_graphs import DecodeGraphs
from .kv_ledger import graph_shapes, utterance_slots
from .options import EngineOptions, PolicyOptions
from .policy import WholeCharacters, choose_prefix, record_interim
from .utterance import TokenResult, Utterance

MIN_SAMPLES = N_FFT  # one STFT window: less audio than this gives no result


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
    encoder_chunks: int = 0
    decoder_positions: int = 0
    reencoded: int = 0
    prefix: tuple[int, ...] = ()
    row: DecodeRow | None = None
    probe: bool = False  # the draft offered was cut to a probe


def _always_whole(tokens) -> bool:
    return True


class ModelRunner:
    def __init__(self, model: SpeechModel, policy: PolicyOptions, end_ids: tuple[int, ...],
                 whole: WholeCharacters = _always_whole, options: EngineOptions | None = None,
                 static_decode: bool | None = None,
                 allocate: Callable[[Utterance], RowCache] | None = None) -> None:
        """``end_ids``: the checkpoint's end-of-text ids; ``whole``: whether ids end on a whole
        character (the text layer's answer); ``static_decode``: fixed-shape decode steps
        (CUDA graphs on a GPU; None: on CUDA only), prepared by :meth:`warm_up`;
        ``allocate``: the cache of an utterance's first update (default: its own capacity)."""
        if model.is_aligner:
            raise ValueError("the streaming engine needs an ASR checkpoint, got a forced aligner")
        if model.encoder.attention != "windowed":
            raise ValueError("the streaming engine needs the encoder's windowed attention")
        self.model = model
        self.policy = policy
        self.options = options or EngineOptions(policy=policy)
        # The policy's stop rules; each update replaces the token bound.
        self.stop = StopRules(tuple(end_ids), policy.max_tokens_final, policy.repetition_limit,
                              policy.max_pattern_tokens)
        self.whole = whole
        self.dims = model.dims.audio
        self.audio_pad_id = model.dims.audio_token_id
        self.allocate = allocate or self._allocate
        if static_decode is None:
            static_decode = model.device.type == "cuda"
        self.graphs: DecodeGraphs | None = None
        if static_decode:
            longest = utterance_slots(model.dims, self.options, 0)
            rows, lengths = graph_shapes(self.options, longest)
            self.graphs = DecodeGraphs(model, rows, lengths, pad_id=0)  # finished rows' input: any valid id

    def warm_up(self) -> None:
        """Prepare the fixed-shape decode steps (CUDA graphs): once, before serving."""
        if self.graphs is not None:
            self.graphs.capture_all()

    def _allocate(self, u: Utterance) -> RowCache:
        capacity = u.capacity or utterance_slots(self.model.dims, self.options,
                                                 len(u.spec.head_ids) + len(u.spec.tail_ids))
        return self.model.new_row_cache(capacity)

    # -- one batched update ----------------------------------------------------------------

    @torch.inference_mode()
    def update(self, batch: list[tuple[Utterance, bool]]) -> list[TokenResult]:
        started = time.perf_counter()
        works = [_Work(u, final, u.snapshot(0 if final else self._interim_end(u))) for u, final in batch]
        ready = [w for w in works if w.audio.shape[0] >= MIN_SAMPLES]
        window_tokens, open_tokens = self._encode(ready)
        commits = self._commit_inputs(ready, window_tokens)
        self._decode(ready, commits, open_tokens)
        elapsed = time.perf_counter() - started
        return [self._result(w, elapsed) for w in works]

    @staticmethod
    def _interim_end(u: Utterance) -> int:
        """The audio an interim covers: what was asked, unless windows past it are stored already (all)."""
        end = u.interim_end
        return end if end and u.features.completed_count(end) >= len(u.features.windows) else 0

    @torch.inference_mode()
    def commit(self, utterances: list[Utterance]) -> int:
        """Encode and append the windows that completed since the last update; no decoding, no result.

        The same work the next update would otherwise do first (with the same floor rule
        as an interim: committed windows stay as they are); run between updates it keeps
        the update after a window boundary as cheap as any other. Returns how many
        windows were committed.
        """
        works = [_Work(u, False, u.snapshot()) for u in utterances]
        ready = [w for w in works if w.audio.shape[0] >= MIN_SAMPLES]
        window_tokens, _ = self._encode(ready, open_window=False)
        inputs = self._commit_inputs(ready, window_tokens)
        rows = [(w, *inputs[w.utterance.id]) for w in ready if inputs[w.utterance.id][0]]
        if rows:
            model = self.model
            ids = right_pad([ids for _, ids, _ in rows], pad_id=0).to(model.device)
            model.decoder.forward_rows(model.embed(ids, [audio for _, _, audio in rows]),
                                       [w.utterance.cache for w, _, _ in rows], [len(ids) for _, ids, _ in rows])
        return sum(len(tokens) for tokens in window_tokens.values())

    def _encode(self, works: list[_Work], open_window: bool = True
                ) -> tuple[dict[int, list[torch.Tensor]], dict[int, torch.Tensor]]:
        """Encode stale, newly completed and (``open_window``) open windows of all utterances in one batch.

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
            # A louder frame moves the log floor and makes earlier windows stale. A final
            # re-encodes them (it equals decoding from scratch); an interim keeps the windows
            # it committed before, so its features of those windows may differ from a
            # from-scratch computation in frames quieter than the new floor (clamped to the
            # old one), and its text accordingly; it never re-encodes completed windows.
            stale = u.features.stale_from(floor) if w.is_final else u.committed_windows
            w.reencoded = max(0, u.committed_windows - stale)
            w.commit_from = min(stale, u.committed_windows)
            total_frames = u.features.frames(w.audio.shape[0])
            pad_to = model.encoder.chunk_padding(total_frames)
            final_frames = u.features.final_frames(w.audio.shape[0])
            for k in range(w.commit_from, w.complete):
                mel = scale_log_mel(u.features.windows[k].raw, floor)
                first_chunk = k * self.dims.chunks_per_window
                pieces.append(self._embed_chunks(w, mel, first_chunk, floor, pad_to, final_frames))
                owners.append((w, k))
                w.encoder_frames += mel.shape[1]
            if open_window and open_raw.shape[1]:
                mel = scale_log_mel(open_raw, floor)
                pieces.append(self._embed_chunks(w, mel, w.complete * self.dims.chunks_per_window, floor, pad_to,
                                                 final_frames))
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

    def _embed_chunks(self, w: _Work, mel: torch.Tensor, first_chunk: int, floor: float, pad_to: int,
                      final_frames: int) -> torch.Tensor:
        """The encoder's convolution front of ``mel`` ``(n_mels, frames)``, which starts at chunk
        ``first_chunk`` of the utterance: ``(tokens, d_model)``.

        Each 1 s chunk is convolved on its own, so a whole chunk whose frames are final gives the
        same tokens at every update under the same floor: those are kept on the utterance and
        reused (the open window's earlier chunks, then the window when it is committed).
        """
        model = self.model
        u = w.utterance
        chunk = self.dims.chunk_frames
        count = -(-mel.shape[1] // chunk)
        reused = 0
        while reused < count and u.chunk_floor(first_chunk + reused) == floor:
            reused += 1
        parts = [u.chunk_embeds[first_chunk + i][1] for i in range(reused)]
        if reused < count:
            new = model.encoder.embed_chunks(mel[:, reused * chunk :].to(model.device, model.dtype), pad_to)
            w.encoder_chunks += len(new)
            for i, tokens in enumerate(new, start=reused):
                if pad_to == chunk and (first_chunk + i + 1) * chunk <= final_frames:
                    u.chunk_embeds[first_chunk + i] = (floor, tokens)
            parts += new
        return torch.cat(parts)

    def _commit_inputs(self, works: list[_Work], window_tokens: dict[int, list[torch.Tensor]]
                       ) -> dict[int, tuple[list[int], torch.Tensor | None]]:
        """Cut each cache back to the windows kept and mark the new ones committed.

        Returns, by utterance id, the positions to append after that (the prompt head the
        first time, then one audio placeholder per token of the newly committed windows)
        and those windows' audio tokens; the caller runs them through the decoder.
        """
        inputs = {}
        for w in works:
            u = w.utterance
            windows = window_tokens.get(u.id, [])
            ids: list[int] = []
            if u.cache is None:
                ids = list(u.spec.head_ids)
                u.head_length = len(ids)
                u.cache = self.allocate(u)
            else:
                u.cache.truncate(u.head_length + w.commit_from * self.dims.window_tokens)
            audio = torch.cat(windows) if windows else None
            if audio is not None:
                ids = ids + [self.audio_pad_id] * audio.shape[0]
            inputs[u.id] = (ids, audio)
            u.committed_windows = w.complete
            for window in u.features.windows[w.commit_from : w.complete]:
                window.floor_used = w.floor
            u.forget_chunks_before(w.complete * self.dims.chunks_per_window)
        return inputs

    def _decode(self, works: list[_Work], commits: dict[int, tuple[list[int], torch.Tensor | None]],
                open_tokens: dict[int, torch.Tensor]) -> None:
        if not works:
            return
        policy = self.policy
        rows = []
        for w in works:
            u = w.utterance
            open_audio = open_tokens.get(u.id)
            hypothesis = u.hypothesis.tokens
            if w.is_final:
                w.prefix, limit = (), policy.max_tokens_final
            else:
                w.prefix, limit = tuple(choose_prefix(u.hypothesis, policy, self.whole)), policy.max_tokens_per_update
            # The whole draft while drafts are kept; after one was mostly rejected, a probe. A kept
            # probe brings the whole draft back for an interim; a final (where a wrong draft
            # costs the most) waits for a whole draft kept again.
            whole = u.draft_kept >= 0.5 or (u.probe_kept and not w.is_final)
            w.probe = not whole
            room = limit if whole else min(limit, policy.draft_probe_tokens)
            draft = hypothesis[len(w.prefix) : len(w.prefix) + room] if policy.draft else []
            n_open = 0 if open_audio is None else open_audio.shape[0]
            commit_ids, commit_audio = commits[u.id]
            ids = commit_ids + [self.audio_pad_id] * n_open + list(u.spec.tail_ids) + list(w.prefix)
            pieces = [a for a in (commit_audio, open_audio) if a is not None]
            audio = torch.cat(pieces) if pieces else None
            w.row = DecodeRow(u.cache, ids, replace(self.stop, max_tokens=limit), audio, history=w.prefix,
                              draft=draft, bias=u.spec.bias)
            rows.append(w.row)
        decode(self.model, rows, self.graphs.stepper() if self.graphs is not None else None)
        for w in works:
            if w.row.draft and w.probe:
                w.utterance.probe_kept = w.row.accepted == len(w.row.draft)
            elif w.row.draft:
                w.utterance.draft_kept = w.row.accepted / len(w.row.draft)
                w.utterance.probe_kept = False
            w.decoder_positions += w.row.positions
            w.utterance.cache.truncate(w.utterance.stable_slots())

    def _result(self, w: _Work, elapsed: float) -> TokenResult:
        u = w.utterance
        row = w.row
        generated = row.tokens if row is not None else []
        if not w.is_final and row is not None:
            record_interim(u.hypothesis, list(w.prefix), list(generated), list(row.logprobs))
        prefill = len(row.ids) + len(row.draft) if row is not None else 0
        return TokenResult(
            utterance_id=u.id,
            is_final=w.is_final,
            tokens=tuple(w.prefix) + tuple(generated),
            prefix_tokens=len(w.prefix),
            # The prefix's from the updates that decoded it (a final has none), then the new ones.
            logprobs=(tuple(u.hypothesis.logprobs[: len(w.prefix)]) + tuple(row.logprobs)) if row is not None else (),
            audio_samples=w.audio.shape[0],
            encoder_frames=w.encoder_frames,
            encoder_chunks=w.encoder_chunks,
            decoder_positions=w.decoder_positions,
            decode_steps=row.positions - prefill if row is not None else 0,
            draft_tokens=len(row.draft) if row is not None else 0,
            accepted_tokens=row.accepted if row is not None else 0,
            windows_reencoded=w.reencoded,
            compute_s=elapsed,
        )
