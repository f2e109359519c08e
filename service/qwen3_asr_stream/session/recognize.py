"""Unary recognition of a whole recording.

The recording is decoded and cut into utterances with the same endpointing as a
stream (on a worker thread: the event loop stays free); each utterance is one
engine utterance with interim results off, a few at a time so that one long
recording does not take the whole engine; word times come from the shared aligner
worker. Results are final, one per utterance, in order.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from ..engine.engine import StreamingEngine
from ..engine.options import UtteranceOptions
from ..engine.utterance import UpdateResult
from ..audio.input import AudioDecoder
from .errors import RecognitionFailed
from .types import SAMPLES_PER_MS, Backend, RecognitionSettings, Transcript, align_words
from ..audio.vad import EndReason, Segmenter, SpeechAudio, SpeechEnded, SpeechStarted


@dataclass
class _Piece:
    index: int
    onset: int
    audio_start: int
    audio: list[np.ndarray]
    end: SpeechEnded | None = None


@dataclass(frozen=True)
class Recognition:
    results: list[Transcript]
    duration_ms: int


def split_utterances(data: bytes, settings: RecognitionSettings) -> tuple[list[_Piece], int]:
    """Decode and segment a whole recording; returns the utterances and the duration in ms.

    Raises InvalidAudio. CPU work: run it off the event loop.
    """
    decoder = AudioDecoder(settings.audio, max_chunk_bytes=max(len(data), settings.audio.frame_bytes))
    samples = decoder.decode(data)
    samples = np.concatenate([samples, decoder.flush()])
    segmenter = Segmenter(settings.endpointing)
    events = segmenter.push(samples) + segmenter.finish(EndReason.END_OF_STREAM)
    pieces: dict[int, _Piece] = {}
    for event in events:
        if isinstance(event, SpeechStarted):
            pieces[event.utterance_index] = _Piece(event.utterance_index, event.sample, event.audio_start_sample, [])
        elif isinstance(event, SpeechAudio):
            pieces[event.utterance_index].audio.append(event.samples)
        elif isinstance(event, SpeechEnded):
            pieces[event.utterance_index].end = event
    return list(pieces.values()), int(decoder.received_ms)


async def transcribe(engine: StreamingEngine, options: UtteranceOptions, audio: np.ndarray) -> UpdateResult:
    """The final result of one utterance from the engine (awaitable; cancellable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def deliver(result: UpdateResult) -> None:
        if not done.done():
            done.set_result(result)

    utterance = engine.open(options, lambda result: loop.call_soon_threadsafe(deliver, result))
    try:
        engine.push(utterance, audio)
        engine.finish(utterance)
        return await done
    except BaseException:
        engine.cancel(utterance)
        raise


async def recognize(data: bytes, settings: RecognitionSettings, backend: Backend) -> Recognition:
    received = time.monotonic()
    pieces, duration_ms = await asyncio.to_thread(split_utterances, data, settings)
    backend.metrics.audio_seconds.labels("recognize").inc(duration_ms / 1000)
    engine = backend.engines[settings.model]
    limit = asyncio.Semaphore(backend.options.recognize_parallel)
    aligner = backend.aligner if settings.word_times else None

    async def one(piece: _Piece) -> Transcript:
        assert piece.end is not None
        audio = np.concatenate(piece.audio) if piece.audio else np.zeros(0, np.float32)
        async with limit:
            result = await transcribe(engine, settings.utterance_options(False), audio)
        if result.error:
            raise RecognitionFailed(f"recognition of utterance {piece.index} failed")
        words = ()
        if aligner is not None and result.text.strip():
            words = await align_words(aligner, audio, result.text, settings.language_of(result.language),
                                      piece.audio_start, piece.end.audio_end_sample,
                                      f"recognize utterance {piece.index}")
        return Transcript(
            utterance_index=piece.index, is_final=True, text=result.text, stable_text=result.text,
            language=settings.language_of(result.language),
            start_ms=piece.audio_start // SAMPLES_PER_MS, end_ms=piece.end.audio_end_ms,
            processed_ms=duration_ms, latency_ms=round(1000 * (time.monotonic() - received)),
            end_reason=piece.end.reason, words=words,
        )

    tasks = [asyncio.ensure_future(one(piece)) for piece in pieces]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # on an error or a cancel, stop the rest and release their utterances
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return Recognition(list(results), duration_ms)
