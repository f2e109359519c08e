"""The ``qwen3-asr-stream`` command.

    qwen3-asr-stream stream FILE --server HOST:PORT [--realtime] [--json] ...
    qwen3-asr-stream mic --server HOST:PORT [--device N] ...

``transcribe``, ``align`` and ``serve`` belong to the server package and are handed
to ``qwen3_asr_stream.cli.main`` (installed with the ``server`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
from typing import Sequence, TextIO

import grpc

from .api import DEFAULT_PORT, AsyncStreamingClient, RecognitionOptions
from .audio_files import AudioFileError, read_audio
from .results import Result, printable

PROG = "qwen3-asr-stream"
SERVER_COMMAND_HELP = {
    "transcribe": "transcribe audio files offline (server extra)",
    "align": "word timestamps for a known transcript (server extra)",
    "serve": "run the streaming recognition server (server extra)",
}
SERVER_COMMANDS = tuple(SERVER_COMMAND_HELP)
SERVER_EXTRA_HINT = "the server commands need the server extra: pip install 'qwen3-asr-stream[server]'"
DEFAULT_SERVER = os.environ.get("QWEN3_ASR_SERVER", f"localhost:{DEFAULT_PORT}")


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.2f}"


class TranscriptPrinter:
    """Text output: finals with their times and words; on a terminal, the live
    partial transcript is rewritten in place on one line with carriage returns."""

    def __init__(self, out: TextIO, live: bool | None = None):
        self.out = out
        self.live = out.isatty() if live is None else live
        self._shown = 0  # characters of the partial line on screen

    def handle(self, item) -> None:
        if not isinstance(item, Result):
            return  # speech events are not printed in text mode
        if item.is_final:
            self._final(item)
        elif self.live:
            self._partial(printable(item.transcript))

    def close(self) -> None:
        self._erase()

    def _partial(self, text: str) -> None:
        width = max(10, shutil.get_terminal_size().columns - 1)  # a wrapped line cannot be rewritten
        if len(text) > width:
            text = "..." + text[-(width - 3):]
        self.out.write("\r" + text + " " * max(0, self._shown - len(text)))
        self.out.flush()
        self._shown = len(text)

    def _erase(self) -> None:
        if self._shown:
            self.out.write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _final(self, r: Result) -> None:
        self._erase()
        language = f" ({r.language})" if r.language else ""
        self.out.write(f"[{_seconds(r.start_ms)}-{_seconds(r.end_ms)}]{language} {printable(r.transcript)}\n")
        if r.words:
            words = " ".join(f"{printable(w.word)}[{_seconds(w.start_ms)}-{_seconds(w.end_ms)}]" for w in r.words)
            self.out.write(f"    {words}\n")
        self.out.flush()


class JsonPrinter:
    """One JSON object per response, one per line."""

    def __init__(self, out: TextIO):
        self.out = out

    def handle(self, response) -> None:
        from google.protobuf.json_format import MessageToDict

        obj = MessageToDict(response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


def recognition_options(args: argparse.Namespace) -> RecognitionOptions:
    return RecognitionOptions(
        language=args.language,
        context=args.context,
        hot_words=tuple(args.hot_word),
        interim_results=args.interim,
        word_timestamps=args.word_timestamps,
    )


def client_settings(args: argparse.Namespace) -> dict:
    return {"tls": args.tls, "root_certificates": args.tls_ca, "token": args.token}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST[:PORT]",
                        help=f"server address; the port defaults to {DEFAULT_PORT} "
                             f"(default: $QWEN3_ASR_SERVER or {DEFAULT_SERVER})")
    parser.add_argument("--language", default="", help="language of the speech, e.g. English (default: detect)")
    parser.add_argument("--context", default="", help="text that helps recognition: topic, names")
    parser.add_argument("--hot-word", action="append", default=[], metavar="WORD",
                        help="a word or phrase likely to occur (repeatable)")
    parser.add_argument("--no-interim", dest="interim", action="store_false",
                        help="final results only, no partial transcripts")
    parser.add_argument("--word-timestamps", action=argparse.BooleanOptionalAction, default=True,
                        help="word start and end times in final results (default: on)")
    parser.add_argument("--json", action="store_true", help="print each response as one JSON object per line")
    parser.add_argument("--tls", action="store_true", help="connect with TLS using the system root certificates")
    parser.add_argument("--tls-ca", metavar="PEM", help="connect with TLS trusting this CA certificate file")
    parser.add_argument("--token", default=os.environ.get("QWEN3_ASR_TOKEN"),
                        help="bearer token for the server (default: $QWEN3_ASR_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real-time speech recognition with Qwen3-ASR: a streaming client, offline "
                    "transcription and alignment, and the server.",
        epilog=f"transcribe, align and serve need the server extra (pip install '{PROG}[server]'); "
               f"`{PROG} COMMAND --help` describes each command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    stream = commands.add_parser("stream", help="stream an audio file and print the transcripts")
    stream.add_argument("file", help="audio file: WAV (16-bit PCM or 32-bit float) is sent as samples; Opus, "
                        "Ogg, WebM, FLAC, MP3, M4A, MP4 ... are sent as they are and decoded by the server")
    stream.add_argument("--realtime", action="store_true", help="send the audio no faster than real time")
    stream.add_argument("--chunk-ms", type=float, default=100.0, help="audio per message, ms (default: 100)")
    _add_common(stream)
    stream.set_defaults(handler=_stream)

    mic = commands.add_parser("mic", help="transcribe the microphone live (needs the mic extra)")
    mic.add_argument("--device", default=None, help="input device index or name (see `python -m sounddevice`)")
    mic.add_argument("--sample-rate", type=int, default=16000, help="capture rate, Hz (default: 16000)")
    _add_common(mic)
    mic.set_defaults(handler=_mic)
    # Listed here for --help; they are handed to the server package before parsing (see main).
    for name, text in SERVER_COMMAND_HELP.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def _stream(args: argparse.Namespace) -> int:
    """Stream the file. Ctrl-C ends the audio there and waits for the last final result (as
    ``mic`` does); a second Ctrl-C quits at once (exit status 130)."""
    audio = read_audio(args.file)
    printer = JsonPrinter(sys.stdout) if args.json else TranscriptPrinter(sys.stdout)
    interrupts = 0

    async def run() -> None:
        stop_audio = asyncio.Event()
        main = asyncio.current_task()

        def on_interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                printer.close()  # the live line, if any, is erased first
                print(f"{PROG} stream: stopping: the audio ends here; waiting for the last final result "
                      "(Ctrl-C again to quit now)", file=sys.stderr, flush=True)
                stop_audio.set()
            else:
                main.cancel()

        async def chunks():
            for chunk in audio.chunks(args.chunk_ms):
                if stop_audio.is_set():
                    return
                yield chunk
                await asyncio.sleep(0)  # a Ctrl-C between chunks is seen before the next one

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        try:
            async with AsyncStreamingClient(args.server, **client_settings(args)) as client:
                async for item in client.stream(chunks(), audio.format, recognition_options(args),
                                                realtime=args.realtime, raw=args.json):
                    printer.handle(item)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        if interrupts < 2:
            raise
        return 130
    finally:
        printer.close()
    return 0


def _mic(args: argparse.Namespace) -> int:
    from . import mic

    printer = JsonPrinter(sys.stdout) if args.json else TranscriptPrinter(sys.stdout)
    try:
        return mic.run(args, recognition_options(args), client_settings(args), printer)
    finally:
        printer.close()


def _server_main(argv: list[str]) -> int:
    try:
        from qwen3_asr_stream.cli import main as server_main
    except ImportError as exc:
        print(f"{PROG} {argv[0]}: {SERVER_EXTRA_HINT} ({exc})", file=sys.stderr)
        return 2
    return server_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SERVER_COMMANDS:
        return _server_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except AudioFileError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an unreadable --tls-ca file
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"{PROG} {args.command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
