"""``qwen3-asr-stream serve``: load the models and run the gRPC server until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import socket
import sys
from pathlib import Path

from ..audio.vad import EndpointingOptions
from ..checkpoint import DEFAULT_ALIGNER, DEFAULT_MODEL, LoadOptions, add_load_arguments, load_options_from
from ..engine.speakers import WESPEAKER_REPO, SpeakerModelOptions, load_speaker_model, locate_speaker_model
from .loading import DEFAULT_MAX_BATCH, load_aligner, load_engine, model_name
from .options import DEFAULT_HTTP_PORT, ServerOptions, stage_conflicts

ENGINE_CLOSE_S = 0.2  # at exit, how long the engine's thread may take to finish its batch

log = logging.getLogger("qwen3_asr_stream.server")


def add_serve_command(commands) -> None:
    d, e = ServerOptions(), EndpointingOptions()
    p = commands.add_parser("serve", help="run the streaming recognition server (gRPC)",
                            description="Serve asr.v1.SpeechRecognition (plus grpc.health.v1 and reflection) "
                                        "until SIGTERM or SIGINT, which drain the running streams first.")
    p.add_argument("--model", action="append", default=None, metavar="PATH_OR_REPO",
                   help=f"ASR checkpoint folder or Hub repo id; repeat to serve several, the first is the default; "
                        f"clients name a model by its last path part (default: {DEFAULT_MODEL})")
    p.add_argument("--aligner", default=DEFAULT_ALIGNER, help="forced-aligner folder or repo id, for word times (default: %(default)s)")
    p.add_argument("--no-aligner", action="store_true", help="serve without word times (saves memory)")
    p.add_argument("--host", default=d.host, help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 or [::] for every interface)")
    p.add_argument("--port", type=int, default=d.port, help="gRPC port; 0 = any free port (default: %(default)s)")
    p.add_argument("--max-streams", type=int, default=d.max_streams, help="streams (and Recognize calls) at once; more are RESOURCE_EXHAUSTED (default: %(default)s)")
    p.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, help="largest audio_content of one request (default: %(default)s)")
    p.add_argument("--max-recognize-bytes", type=int, default=d.max_recognize_bytes,
                   help="largest recording for unary Recognize (default: %(default)s)")
    p.add_argument("--max-stream-seconds", type=int, default=d.max_stream_seconds, help="audio per stream; more is OUT_OF_RANGE (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s, metavar="SECONDS",
                   help="end a stream that sends (or reads) nothing this long (default: %(default)s)")
    p.add_argument("--grace", type=float, default=d.grace_s, metavar="SECONDS",
                   help="on SIGTERM, time for running utterances to finish (default: %(default)s)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates (mutual TLS)")
    p.add_argument("--auth-token", default=os.environ.get("QWEN3_ASR_TOKEN"),
                   help="require 'authorization: Bearer TOKEN' (default: $QWEN3_ASR_TOKEN; unset = no auth)")
    p.add_argument("--metrics-port", type=int, default=d.metrics_port, help="Prometheus /metrics port on --host; 0 = off (default: %(default)s)")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT,
                   help="HTTP port on --host: OpenAI /v1/realtime (WebSocket) and /v1/audio/transcriptions, the live "
                        "captions page at /, /readyz, /livez; 0 = off (default: %(default)s)")
    p.add_argument("--max-lead-seconds", type=float, default=d.max_lead_s,
                   help="a stream's audio is read at most this far ahead of real time: a client sending a file "
                        "faster is paced there (default: %(default)s)")
    p.add_argument("--update-interval-ms", type=int, default=d.update_interval_ms,
                   help="default interim result cadence, ms of audio (default: %(default)s)")
    p.add_argument("--vad-aggressiveness", type=int, default=e.aggressiveness, choices=range(4),
                   help="default webrtcvad mode, 0-3 (default: %(default)s)")
    p.add_argument("--stop-history-ms", type=int, default=e.stop_window_ms,
                   help="default window in which 90%% unvoiced frames end an utterance (default: %(default)s)")
    p.add_argument("--max-utterance-ms", type=int, default=e.max_utterance_ms,
                   help="longest utterance, cut at a quiet point; also the most a stream may ask for "
                        "(default: %(default)s)")
    p.add_argument("--speaker-model", default=None, metavar="NAME[:SOURCE]",
                   help="speaker model for diarization (clients ask for it per stream): resemblyzer (the GE2E "
                        "encoder shipped in the resemblyzer wheel, no download) or wespeaker-resnet34[:FOLDER or "
                        f"HUB_REPO] (WeSpeaker ResNet34 from pyannote's checkpoint, default {WESPEAKER_REPO}) "
                        "(default: none, diarization off)")
    p.add_argument("--speaker-threshold", type=float, default=None,
                   help="diarization: cosine similarity to a speaker to be that speaker (default: the speaker "
                        "model's own, 0.8 for resemblyzer, 0.75 for wespeaker-resnet34)")
    p.add_argument("--speaker-device", default="cpu",
                   help="where wespeaker-resnet34 runs, e.g. cuda (default: %(default)s; resemblyzer: cpu only)")
    p.add_argument("--speaker-threads", type=int, default=1,
                   help="CPU threads of the speaker model, beside the engine's (default: %(default)s)")
    p.add_argument("--max-speakers", type=int, default=d.max_speakers,
                   help="diarization: the most speakers a stream may ask for (default: %(default)s)")
    p.add_argument("--riva-any-model", action="store_true",
                   help="Riva API: a request naming a model this server does not have (LiveKit's nvidia plugin "
                        "sends a Parakeet name by default) gets the default model instead of INVALID_ARGUMENT")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="utterances decoded together (default: %(default)s)")
    p.add_argument("--kv-cache-gib", type=float, default=None,
                   help="decoder cache budget of the engine (default: enough for 2 utterances per stream)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="one line per stream at INFO (default: %(default)s)")
    add_load_arguments(p)
    p.set_defaults(handler=lambda args: _serve(args, load_options_from(args)))


def server_options(args: argparse.Namespace) -> ServerOptions:
    endpointing = dataclasses.replace(EndpointingOptions(), aggressiveness=args.vad_aggressiveness,
                                      stop_window_ms=args.stop_history_ms, max_utterance_ms=args.max_utterance_ms)
    return ServerOptions(
        host=args.host, port=args.port, max_streams=args.max_streams, max_message_bytes=args.max_message_bytes,
        max_recognize_bytes=args.max_recognize_bytes, max_stream_seconds=args.max_stream_seconds,
        idle_timeout_s=args.idle_timeout, grace_s=args.grace, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca, auth_token=args.auth_token or None, metrics_port=args.metrics_port,
        http_port=args.http_port, max_lead_s=args.max_lead_seconds,
        endpointing=endpointing, update_interval_ms=args.update_interval_ms, riva_any_model=args.riva_any_model,
        max_speakers=args.max_speakers)


def check_port_free(host: str, port: int, what: str) -> None:
    """Raise ValueError when ``host`` is no address here, or ``port`` cannot be bound on it now (0: any
    port, only the host is checked).

    A bind without SO_REUSEPORT: a port another server listens on is refused here even
    where gRPC itself would share it.
    """
    bare = host.strip("[]")
    try:  # the host is checked for port 0 too
        family, kind, proto, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r} is not an address of this machine ({exc.strerror})") from None
    if port == 0:
        return
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR as the servers themselves bind: connections of a previous run in
        # TIME_WAIT do not block the port, a listening server does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = " (0 = any free port)" if what == "--port" else ""
            raise ValueError(f"{what} {port} on {host} cannot be used ({exc.strerror}); pick another{hint}") from None


def check_tls_file(path: Path | None, option: str) -> None:
    if path is None:
        return
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{option} {str(path)!r} cannot be read ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{option} {str(path)!r} is not a PEM file (no '-----BEGIN' line)")


def preflight(args: argparse.Namespace
              ) -> tuple[ServerOptions, list[str], list[str], list[Path], Path | None, SpeakerModelOptions | None]:
    """Everything ``serve`` can check before loading a model: options and their conflicts, the
    ports, the TLS files, the checkpoint folders and their kinds. Raises ValueError or
    CheckpointError with the one line to print."""
    from ..engine.aligner import MAX_ALIGN_SECONDS
    from ..checkpoint import CheckpointError, read_config, resolve
    from ..model.config import ModelKind

    options = server_options(args)
    models = args.model or [DEFAULT_MODEL]
    names = [model_name(m) for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"two models would have the same name: {names}; use folders with distinct names")
    if args.max_batch < 1 or (args.kv_cache_gib is not None and args.kv_cache_gib <= 0):
        raise ValueError("--max-batch must be at least 1 and --kv-cache-gib positive")
    problems = stage_conflicts(options, {}, None if args.no_aligner else MAX_ALIGN_SECONDS)
    if problems:
        raise ValueError("; ".join(problems))
    check_tls_file(options.tls_cert, "--tls-cert")
    check_tls_file(options.tls_key, "--tls-key")
    check_tls_file(options.tls_client_ca, "--tls-client-ca")
    check_port_free(options.host, options.port, "--port")
    check_port_free(options.host, options.metrics_port, "--metrics-port")
    check_port_free(options.host, options.http_port, "--http-port")
    folders = [resolve(m, "model") for m in models]
    for path, folder in zip(models, folders):
        if read_config(folder).kind is ModelKind.ALIGNER:
            raise CheckpointError(f"--model {path!r} is a forced-aligner checkpoint; pass an ASR checkpoint "
                                  "(the aligner goes with --aligner)")
    aligner = None
    if not args.no_aligner:
        aligner = resolve(args.aligner, "aligner")
        if read_config(aligner).kind is not ModelKind.ALIGNER:
            raise CheckpointError(f"--aligner {args.aligner!r} is not a forced-aligner checkpoint "
                                  "(Qwen3-ForcedAligner); pass one, or --no-aligner")
    speakers = speaker_options(args)
    if speakers is not None:
        locate_speaker_model(speakers)
    return options, models, names, folders, aligner, speakers


def speaker_options(args: argparse.Namespace) -> SpeakerModelOptions | None:
    """The speaker model's options from ``--speaker-*`` (None without ``--speaker-model``); ValueError
    for a bad value, or a speaker setting without a model."""
    if not args.speaker_model:
        if args.speaker_threshold is not None or args.speaker_device != "cpu" or args.speaker_threads != 1:
            raise ValueError("--speaker-threshold, --speaker-device and --speaker-threads need --speaker-model")
        return None
    return SpeakerModelOptions(args.speaker_model, args.speaker_threshold, args.speaker_device, args.speaker_threads)


def _serve(args: argparse.Namespace, load: LoadOptions) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # ValueError / CheckpointError -> one line and exit 2, before any model is loaded
    options, models, names, folders, aligner_folder, speaker_model = preflight(args)
    speakers = None
    if speaker_model is not None:
        log.info("loading speaker model %s", speaker_model.spec)
        speakers = load_speaker_model(speaker_model)
    engines = {name: load_engine(str(folder), options, load, kv_cache_gib=args.kv_cache_gib, max_batch=args.max_batch)
               for name, folder in zip(names, folders)}
    aligner = load_aligner(str(aligner_folder), load) if aligner_folder is not None else None
    try:
        asyncio.run(_run(options, engines, aligner, speakers))
    finally:
        for engine in engines.values():
            engine.close(timeout=ENGINE_CLOSE_S)  # the process ends next: no waiting for a batch in flight
    _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """End the process now that the drain is over and everything of ours is closed.

    The interpreter's own teardown (gRPC's and torch's native threads) took 2-10 s on a
    busy machine, time that counts against Kubernetes' terminationGracePeriodSeconds
    and a proxy's patience; nothing is left for it to do.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run(options: ServerOptions, engines, aligner, speakers=None) -> None:
    from .app import AsrServer

    server = AsrServer(options, engines, aligner, speakers)
    try:
        await server.start()
    except OSError as exc:  # a port taken after the pre-flight check (another replica started at once)
        raise ValueError(f"{exc}: the port was taken after the start-up check; pick another (0 = any free "
                         f"port)") from None
    server.stop_on_signals()
    await server.wait_for_termination()
