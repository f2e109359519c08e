"""What one call may do, and the defaults of a stream: the session core's own limits.

The server fills them in from its options (``ServerOptions.session_limits()``) and hands
them down; every protocol adapter and the core read them here, validated in one place.

    limits = SessionLimits(max_streams=8, idle_timeout_s=5.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..audio.vad import EndpointingOptions
from ..engine.options import DEFAULT_UPDATE_INTERVAL_MS, update_interval_problem
from ..engine.speakers import MAX_SPEAKERS

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class SessionLimits:
    max_streams: int = 32  # streams and unary calls served at once; more are refused as busy
    max_message_bytes: int = 64 * KIB  # largest audio payload of one streaming message
    max_recognize_bytes: int = 2 * MIB  # largest recording of one unary call (~65 s of 16 kHz 16-bit mono)
    max_stream_seconds: int = 3600  # audio of one stream; more ends it (OUT_OF_RANGE)
    idle_timeout_s: float = 30.0  # no input (or no result read) this long ends a call
    endpointing: EndpointingOptions = field(default_factory=EndpointingOptions)  # a stream's default
    update_interval_ms: int = DEFAULT_UPDATE_INTERVAL_MS  # a stream's default interim cadence, ms of audio
    max_context_chars: int = 2000  # context plus hot words of one request
    max_queued_responses: int = 64  # unread results of a stream before its audio is no longer read
    recognize_parallel: int = 4  # utterances of one unary call in the engine at once
    max_lead_s: float = 30.0  # a stream's audio is read at most this far ahead of real time
    max_speakers: int = 8  # diarization: the most speakers a stream may ask for (labels 1..this)
    max_speaker_backlog_s: float = 2.0  # diarization is refused as busy while the speaker model is this far behind

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problem(limits: SessionLimits) -> str | None:
    """The first thing wrong with ``limits``, as a sentence naming the field (None when none)."""
    checks = (
        (_int(limits.max_streams) and limits.max_streams >= 1,
         f"max_streams must be at least 1, got {limits.max_streams!r}"),
        (_int(limits.max_message_bytes) and KIB <= limits.max_message_bytes <= 4 * MIB,
         f"max_message_bytes must be 1 KiB-4 MiB (64 KiB holds 100 ms of 48 kHz stereo float32 with room "
         f"to spare), got {limits.max_message_bytes!r}"),
        (_int(limits.max_recognize_bytes) and KIB <= limits.max_recognize_bytes <= 256 * MIB,
         f"max_recognize_bytes must be 1 KiB-256 MiB, got {limits.max_recognize_bytes!r}"),
        (_int(limits.max_stream_seconds) and 1 <= limits.max_stream_seconds <= 596 * 3600,
         f"max_stream_seconds must be 1 s to 596 h (int32 ms offsets), got {limits.max_stream_seconds!r}"),
        (_number(limits.idle_timeout_s) and limits.idle_timeout_s > 0,
         f"idle_timeout_s must be positive, got {limits.idle_timeout_s!r}"),
        (isinstance(limits.endpointing, EndpointingOptions), "endpointing must be an EndpointingOptions"),
        (update_interval_problem(limits.update_interval_ms) is None and _int(limits.update_interval_ms),
         update_interval_problem(limits.update_interval_ms)
         or f"update_interval_ms must be an integer, got {limits.update_interval_ms!r}"),
        (_int(limits.max_context_chars) and limits.max_context_chars >= 1,
         f"max_context_chars must be at least 1, got {limits.max_context_chars!r}"),
        (_int(limits.recognize_parallel) and limits.recognize_parallel >= 1,
         f"recognize_parallel must be at least 1, got {limits.recognize_parallel!r}"),
        (_number(limits.max_lead_s) and limits.max_lead_s >= 1,
         f"max_lead_s must be at least 1 s, got {limits.max_lead_s!r}"),
        (_int(limits.max_speakers) and 1 <= limits.max_speakers <= MAX_SPEAKERS,
         f"max_speakers must be 1-{MAX_SPEAKERS}, got {limits.max_speakers!r}"),
        (_number(limits.max_speaker_backlog_s) and limits.max_speaker_backlog_s > 0,
         f"max_speaker_backlog_s must be positive, got {limits.max_speaker_backlog_s!r}"),
        (_int(limits.max_queued_responses) and limits.max_queued_responses >= 8,
         f"max_queued_responses must be at least 8, got {limits.max_queued_responses!r}"),
    )
    return next((message for ok, message in checks if not ok), None)
