"""Server-side commands of ``qwen3-asr-stream``: transcribe, align and serve."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from qwen3_asr_client.results import printable

from .checkpoint import DEFAULT_ALIGNER, DEFAULT_MODEL, CheckpointError, add_load_arguments, load_options_from
from .server.cli import add_serve_command


def _words_json(words) -> list[dict]:
    return [{"text": w.text, "start": w.start, "end": w.end} for w in words]


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from .audio.files import read_audio
    from .offline import TranscribeOptions, Transcriber

    options = TranscribeOptions(
        language=args.language, context=args.context, max_new_tokens=args.max_new_tokens,
        word_timestamps=args.aligner is not None,
    )
    audios = {path: read_audio(path) for path in args.audio}  # every file readable before loading the model
    transcriber = Transcriber.from_pretrained(args.model, args.aligner, load_options_from(args))
    for path, audio in audios.items():
        if audio.shape[0] == 0:
            print(f"qwen3-asr-stream transcribe: {path} has no audio; its result is empty", file=sys.stderr)
        result = transcriber.transcribe([audio], options)[0]
        if args.json:
            record = {"file": path, "language": result.language, "text": result.text}
            if args.aligner is not None:
                record["words"] = _words_json(result.words)
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{printable(path)}\t[{result.language or 'none'}]\t{printable(result.text)}", flush=True)
            for w in result.words:
                print(f"  {w.start:8.3f} {w.end:8.3f}  {printable(w.text)}")
    return 0


def _cmd_align(args: argparse.Namespace) -> int:
    from .engine.aligner import ForcedAligner
    from .audio.files import read_audio
    from .checkpoint import load_pretrained
    from .offline import align_recording
    from .text.transcript import normalize_language

    language = normalize_language(args.language)
    audio = read_audio(args.audio)
    if audio.shape[0] == 0:
        raise ValueError(f"{args.audio} has no audio: there is nothing to align the text to")
    aligner = ForcedAligner(*load_pretrained(args.aligner, load_options_from(args), "aligner"))
    words = align_recording(aligner, audio, args.text, language)
    if args.json:
        print(json.dumps({"file": args.audio, "words": _words_json(words)}, ensure_ascii=False))
    else:
        for w in words:
            print(f"{w.start:8.3f} {w.end:8.3f}  {printable(w.text)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen3-asr-stream", description="Qwen3-ASR speech recognition")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("transcribe", help="transcribe audio files offline")
    t.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG; any rate and channel count)")
    t.add_argument("--model", default=DEFAULT_MODEL, help=f"checkpoint folder or Hub repo id (default {DEFAULT_MODEL})")
    t.add_argument("--aligner", default=None, help="forced-aligner folder or repo id: adds word timestamps")
    t.add_argument("--language", default=None, help="force the language (e.g. English); default: detect")
    t.add_argument("--context", default="", help="context text: hot words, domain hints")
    t.add_argument("--max-new-tokens", type=int, default=512)
    t.add_argument("--json", action="store_true", help="one JSON object per file")
    add_load_arguments(t)
    t.set_defaults(handler=_cmd_transcribe)

    a = commands.add_parser("align", help="word timestamps for a known transcript")
    a.add_argument("audio")
    a.add_argument("--text", required=True, help="the transcript to align")
    a.add_argument("--aligner", default=DEFAULT_ALIGNER, help=f"aligner folder or repo id (default {DEFAULT_ALIGNER})")
    a.add_argument("--language", required=True, help="language of the text, e.g. English, Chinese, Japanese")
    a.add_argument("--json", action="store_true")
    add_load_arguments(a)
    a.set_defaults(handler=_cmd_align)

    add_serve_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (CheckpointError, ValueError) as exc:
        print(f"qwen3-asr-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
