"""Options of the gRPC server: one frozen dataclass, validated in one place.

    options = ServerOptions(port=50051, max_streams=64, auth_token="secret")
    options = dataclasses.replace(options, metrics_port=9464)

Every limit a client can run into is reported by GetSpeechRecognitionConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from ..audio.vad import EndpointingOptions
from ..session.aligner_worker import DEFAULT_ALIGNER_BATCH
from ..session.limits import KIB, MIB, SessionLimits

__all__ = ["DEFAULT_HTTP_PORT", "KIB", "MESSAGE_OVERHEAD_BYTES", "MIB", "ServerOptions", "stage_conflicts"]

# Room for the non-audio fields of a request (config, context, hot words) on top of
# the largest audio payload when sizing gRPC's own receive limit.
MESSAGE_OVERHEAD_BYTES = 16 * KIB
DEFAULT_HTTP_PORT = 8000  # what ``serve`` listens on for HTTP unless --http-port says otherwise
_LIMITS = SessionLimits()  # the session's defaults, written once there


@dataclass(frozen=True)
class ServerOptions:
    """What the server listens on, what it allows, and the defaults of a stream.

    The fields after ``http_port`` up to ``max_lead_s`` are the session core's limits
    (``session_limits()``): their defaults and their checks are ``SessionLimits``'.
    """

    host: str = "127.0.0.1"  # loopback; "0.0.0.0" or "[::]" to serve other machines
    port: int = 50051  # 0 = any free port (the bound port is reported by the server)
    grace_s: float = 20.0  # on SIGTERM, time running utterances get to finish
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key, serve TLS
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # PEM CA: require client certificates signed by it (mutual TLS)
    auth_token: str | None = None  # required as `authorization: Bearer TOKEN` (health checks exempt)
    metrics_port: int = 0  # Prometheus /metrics on host:metrics_port; 0 = off
    # HTTP (OpenAI REST + Realtime WebSocket, captions page) on host:http_port; 0 = off
    # (``serve`` turns it on at DEFAULT_HTTP_PORT)
    http_port: int = 0
    # -- the session core's limits (SessionLimits) --
    max_streams: int = _LIMITS.max_streams
    max_message_bytes: int = _LIMITS.max_message_bytes
    max_recognize_bytes: int = _LIMITS.max_recognize_bytes
    max_stream_seconds: int = _LIMITS.max_stream_seconds
    idle_timeout_s: float = _LIMITS.idle_timeout_s
    endpointing: EndpointingOptions = field(default_factory=EndpointingOptions)
    update_interval_ms: int = _LIMITS.update_interval_ms
    max_context_chars: int = _LIMITS.max_context_chars
    max_queued_responses: int = _LIMITS.max_queued_responses
    recognize_parallel: int = _LIMITS.recognize_parallel
    max_lead_s: float = _LIMITS.max_lead_s
    max_speakers: int = _LIMITS.max_speakers
    max_speaker_backlog_s: float = _LIMITS.max_speaker_backlog_s
    # -- the server's own --
    aligner_max_batch: int = DEFAULT_ALIGNER_BATCH  # utterances aligned in one pass
    # Riva requests naming a model this server does not have (LiveKit's nvidia plugin sends a
    # Parakeet name by default) get the default model instead of INVALID_ARGUMENT.
    riva_any_model: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, message: str | None) -> None:
            if not ok:
                raise ValueError(f"server options: {message}")

        need(isinstance(self.host, str) and self.host.strip() != "", "host must be a host name or address")
        need(_int(self.port) and 0 <= self.port <= 65535, f"port must be 0-65535, got {self.port!r}")
        try:
            self.session_limits()
        except ValueError as exc:
            need(False, str(exc))
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
        need(_int(self.aligner_max_batch) and self.aligner_max_batch >= 1,
             f"aligner_max_batch must be at least 1, got {self.aligner_max_batch!r}")
        need(isinstance(self.riva_any_model, bool), f"riva_any_model must be a bool, got {self.riva_any_model!r}")

    def session_limits(self) -> SessionLimits:
        """The session core's limits, as these options set them."""
        return SessionLimits(**{f.name: getattr(self, f.name) for f in fields(SessionLimits)})

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
