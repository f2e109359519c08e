"""Options of the gRPC server: one frozen dataclass, validated in one place.

    options = ServerOptions(port=50051, max_streams=64, auth_token="secret")
    options = dataclasses.replace(options, metrics_port=9464)

Every limit a client can run into is reported by GetSpeechRecognitionConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..audio.vad import EndpointingOptions
from ..engine.options import MAX_UPDATE_INTERVAL_S, MIN_UPDATE_INTERVAL_S

KIB = 1024
MIB = 1024 * KIB
# Room for the non-audio fields of a request (config, context, hot words) on top of
# the largest audio payload when sizing gRPC's own receive limit.
MESSAGE_OVERHEAD_BYTES = 16 * KIB
MIN_UPDATE_INTERVAL_MS = round(MIN_UPDATE_INTERVAL_S * 1000)  # the engine's bounds, in the protocols' unit
MAX_UPDATE_INTERVAL_MS = round(MAX_UPDATE_INTERVAL_S * 1000)
DEFAULT_HTTP_PORT = 8000  # what ``serve`` listens on for HTTP unless --http-port says otherwise


@dataclass(frozen=True)
class ServerOptions:
    """What the server listens on, what it allows, and the defaults of a stream."""

    host: str = "127.0.0.1"  # loopback; "0.0.0.0" or "[::]" to serve other machines
    port: int = 50051  # 0 = any free port (the bound port is reported by the server)
    max_streams: int = 32  # streams and Recognize calls served at once; more are RESOURCE_EXHAUSTED
    max_message_bytes: int = 64 * KIB  # largest audio_content of one streaming request
    max_recognize_bytes: int = 2 * MIB  # largest RecognizeRequest.audio (~65 s of 16 kHz 16-bit mono)
    max_stream_seconds: int = 3600  # audio of one stream; more ends it with OUT_OF_RANGE
    idle_timeout_s: float = 30.0  # no request (or no response read) this long: DEADLINE_EXCEEDED
    grace_s: float = 20.0  # on SIGTERM, time running utterances get to finish
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key, serve TLS
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # PEM CA: require client certificates signed by it (mutual TLS)
    auth_token: str | None = None  # required as `authorization: Bearer TOKEN` (health checks exempt)
    metrics_port: int = 0  # Prometheus /metrics on host:metrics_port; 0 = off
    # HTTP (OpenAI REST + Realtime WebSocket, captions page) on host:http_port; 0 = off
    # (``serve`` turns it on at DEFAULT_HTTP_PORT)
    http_port: int = 0
    endpointing: EndpointingOptions = field(default_factory=EndpointingOptions)
    update_interval_ms: int = 1000  # default interim cadence, ms of audio
    max_context_chars: int = 2000  # context plus hot words of one request
    max_queued_responses: int = 64  # unread responses of a stream before its audio is no longer read
    recognize_parallel: int = 4  # utterances of one Recognize call in the engine at once
    aligner_max_batch: int = 16  # utterances aligned in one pass
    max_lead_s: float = 30.0  # a stream's audio is read at most this far ahead of real time
    # Riva requests naming a model this server does not have (LiveKit's nvidia plugin sends a
    # Parakeet name by default) get the default model instead of INVALID_ARGUMENT.
    riva_any_model: bool = False
    max_speakers: int = 8  # diarization: the most speakers a stream may ask for (labels 1..this)

    def __post_init__(self) -> None:
        from ..engine.speakers import MAX_SPEAKERS

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"server options: {message}")

        need(isinstance(self.host, str) and self.host.strip() != "", "host must be a host name or address")
        need(_int(self.max_speakers) and 1 <= self.max_speakers <= MAX_SPEAKERS,
             f"max_speakers must be 1-{MAX_SPEAKERS}, got {self.max_speakers!r}")
        need(_int(self.port) and 0 <= self.port <= 65535, f"port must be 0-65535, got {self.port!r}")
        need(_int(self.max_streams) and self.max_streams >= 1, f"max_streams must be at least 1, got {self.max_streams!r}")
        need(_int(self.max_message_bytes) and KIB <= self.max_message_bytes <= 4 * MIB,
             f"max_message_bytes must be 1 KiB-4 MiB (64 KiB holds 100 ms of 48 kHz stereo float32 with room "
             f"to spare), got {self.max_message_bytes!r}")
        need(_int(self.max_recognize_bytes) and KIB <= self.max_recognize_bytes <= 256 * MIB,
             f"max_recognize_bytes must be 1 KiB-256 MiB, got {self.max_recognize_bytes!r}")
        need(_int(self.max_stream_seconds) and 1 <= self.max_stream_seconds <= 596 * 3600,
             f"max_stream_seconds must be 1 s to 596 h (int32 ms offsets), got {self.max_stream_seconds!r}")
        need(isinstance(self.idle_timeout_s, (int, float)) and self.idle_timeout_s > 0,
             f"idle_timeout_s must be positive, got {self.idle_timeout_s!r}")
        need(isinstance(self.grace_s, (int, float)) and self.grace_s >= 0, f"grace_s must be >= 0, got {self.grace_s!r}")
        need((self.tls_cert is None) == (self.tls_key is None),
             "tls_cert and tls_key go together: give both to serve TLS, or neither")
        need(self.tls_client_ca is None or self.tls_cert is not None,
             "tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            need(path is None or Path(path).is_file(), f"{name} {str(path)!r} is not a readable file")
        need(self.auth_token is None or (isinstance(self.auth_token, str) and self.auth_token.strip() != ""
                                         and self.auth_token == self.auth_token.strip()),
             "auth_token must be a non-empty string without surrounding whitespace (or None for no auth)")
        need(_int(self.metrics_port) and 0 <= self.metrics_port <= 65535,
             f"metrics_port must be 0 (off) or a port, got {self.metrics_port!r}")
        need(self.metrics_port == 0 or self.metrics_port != self.port, "metrics_port must differ from port")
        need(_int(self.http_port) and 0 <= self.http_port <= 65535,
             f"http_port must be 0 (off) or a port, got {self.http_port!r}")
        need(self.http_port == 0 or self.http_port not in (self.port, self.metrics_port),
             "http_port must differ from port and metrics_port")
        need(isinstance(self.endpointing, EndpointingOptions), "endpointing must be an EndpointingOptions")
        need(_int(self.update_interval_ms) and MIN_UPDATE_INTERVAL_MS <= self.update_interval_ms <= MAX_UPDATE_INTERVAL_MS,
             f"update_interval_ms must be {MIN_UPDATE_INTERVAL_MS}-{MAX_UPDATE_INTERVAL_MS}, got {self.update_interval_ms!r}")
        for name in ("max_context_chars", "recognize_parallel", "aligner_max_batch"):
            value = getattr(self, name)
            need(_int(value) and value >= 1, f"{name} must be at least 1, got {value!r}")
        need(isinstance(self.max_lead_s, (int, float)) and not isinstance(self.max_lead_s, bool)
             and self.max_lead_s >= 1, f"max_lead_s must be at least 1 s, got {self.max_lead_s!r}")
        need(_int(self.max_queued_responses) and self.max_queued_responses >= 8,
             f"max_queued_responses must be at least 8, got {self.max_queued_responses!r}")
        need(isinstance(self.riva_any_model, bool), f"riva_any_model must be a bool, got {self.riva_any_model!r}")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def receive_limit_bytes(self) -> int:
        """gRPC's own limit on one received message; larger ones fail with RESOURCE_EXHAUSTED."""
        return max(self.max_message_bytes, self.max_recognize_bytes) + MESSAGE_OVERHEAD_BYTES


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def stage_conflicts(options: ServerOptions, engine_max_utterance_s: Mapping[str, float],
                    aligner_max_s: float | None) -> list[str]:
    """What the server's options ask that a later stage cannot do (empty when none).

    ``engine_max_utterance_s``: each model's longest utterance; ``aligner_max_s``: the
    longest audio the forced aligner times (None: no aligner, no word times).
    """
    problems = []
    longest_ms = options.endpointing.max_utterance_ms
    for name, limit in engine_max_utterance_s.items():
        if longest_ms > limit * 1000:
            problems.append(f"max-utterance-ms {longest_ms} is longer than the engine of {name} holds "
                            f"({limit * 1000:.0f} ms)")
    if aligner_max_s is not None and longest_ms > aligner_max_s * 1000:
        problems.append(f"max-utterance-ms {longest_ms} is longer than the aligner can time "
                        f"({aligner_max_s * 1000:.0f} ms): such finals would have no word times; lower it, or serve "
                        f"without the aligner (--no-aligner)")
    return problems
