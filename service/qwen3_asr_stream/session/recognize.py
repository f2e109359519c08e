"""Unary recognition of a whole recording, through the same session as a stream.

The recording is fed to a ``Session`` (interim results off) one second of audio
at a time, so the event loop stays free between pieces; at most
``recognize_parallel`` utterances wait for their finals at once, so one long
recording does not take the whole engine. Results are the session's finals, in
order, with word times when asked for; nothing about utterances, VAD or finals
is written a second time here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .core import Session
from .errors import CallEnded, Status
from .types import Backend, RecognitionSettings, Transcript

PIECE_SECONDS = 1.0  # audio fed to the session between two looks at the event loop
CONTAINER_PIECE_BYTES = 4096  # compressed audio fed between two looks (~1 s of 32 kb/s Opus)


@dataclass(frozen=True)
class Recognition:
    results: list[Transcript]
    duration_ms: int


async def recognize(data: bytes, settings: RecognitionSettings, backend: Backend) -> Recognition:
    """Raises CallEnded with the session's status when it is not OK (bad audio, engine full,
    engine failure); a cancel releases the engine utterances."""
    fmt = settings.audio
    if fmt.encoding.raw:
        piece = max(1, int(PIECE_SECONDS * fmt.sample_rate)) * fmt.frame_bytes
    else:  # compressed: small pieces, so no piece decodes to more than the decoder's bound per call
        piece = CONTAINER_PIECE_BYTES
    session = Session(settings, backend, max_stream_ms=2**62, max_message_bytes=piece, kind="recognize")
    parallel = backend.limits.recognize_parallel
    results: list[Transcript] = []
    try:
        for start in range(0, len(data), piece):
            await session.wait_pending_below(parallel)
            session.audio(data[start:start + piece])
            results += _finals_ready(session)
        session.end_input()
        while not isinstance(item := await session.next(), Status):
            if isinstance(item, Transcript):
                results.append(item)
    finally:
        session.close()
    if not item.ok:
        raise CallEnded(item)
    return Recognition(results, session.received_ms)


def _finals_ready(session: Session) -> list[Transcript]:
    """Take the finals already in the session's outbox (keeps it from filling up)."""
    ready = []
    while (item := session.outbox.take_ready()) is not None:
        if isinstance(item, Transcript):
            ready.append(item)
    return ready
