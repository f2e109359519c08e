"""Codec layer benchmark: what decoding costs beside recognition, and what a streamed container adds.

For each encoding the server takes, the same eSpeak NG speech (8 s, two phrases) is encoded by
PyAV and decoded by ``AudioDecoder`` (the path every surface uses) in pieces of 20 ms of audio
each, as a live stream sends them:

- decode cost: process CPU time per second of audio (median of repeats), and its share of one
  stream's engine cost: the process CPU time per second of audio of one real-time stream
  through the streaming engine (interim updates at the default cadence, a final), measured in
  the same process on the same machine (goal: under 1%). LINEAR16 is the baseline row.
- added latency of a streamed container (Ogg/Opus, WebM/Opus, FLAC), bytes in -> samples out,
  p50 / p95: the bytes are fed as a live producer writes them (each packet when its audio ends,
  from FFmpeg's demuxer: packet positions and times; Ogg pages of 20 ms); per write, the compute
  time of one ``decode()`` call (wall), and how far the samples out trail the audio written
  (what the decoder holds: a FLAC frame until the next frame's header shows where it ends, the
  Opus decoder's and the resampler's delays).

    python benchmarks/bench_codecs.py [--preset asr-0.6b] [--engine-seconds 8] [--repeats 5] [--quick]

``--quick``: the tiny random checkpoint as the engine (its cost is far below a real model's, so
the share is an upper bound), fewer repeats. Writes benchmarks/results/codecs[-quick].json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import checkpoint, percentile, print_table, write_results

CODECS = [  # (name, testing.codecs format or None for raw PCM, encoding, rate)
    ("LINEAR16", None, "LINEAR16", 16000),
    ("MULAW 8 kHz", "mulaw", "MULAW", 8000),
    ("ALAW 8 kHz", "alaw", "ALAW", 8000),
    ("OGG_OPUS", "ogg_opus", "OGG_OPUS", None),
    ("WEBM_OPUS", "webm_opus", "WEBM_OPUS", None),
    ("FLAC", "flac", "FLAC", None),
    ("CONTAINER (MP3)", "mp3", "CONTAINER", None),
    ("CONTAINER (M4A, whole)", "m4a", "CONTAINER", None),
]
STREAMED = ("OGG_OPUS", "WEBM_OPUS", "FLAC", "CONTAINER (MP3)")
PIECE_S = 0.02


def speech() -> tuple[np.ndarray, int]:
    from qwen3_asr_stream.testing.speech import synthesize

    parts, rate = [], 22050
    for text in ("the quick brown fox jumps over the lazy dog", "hello world this is a test of the codecs"):
        audio, rate = synthesize(text)
        parts += [np.zeros(rate // 2, np.int16), audio]
    return np.concatenate(parts + [np.zeros(rate // 2, np.int16)]), rate


def encoded(audio: np.ndarray, rate: int, fmt: str | None, codec_rate: int | None) -> tuple[bytes, int]:
    import soxr

    from qwen3_asr_stream.testing.codecs import encode

    target = codec_rate or rate
    pcm = audio if target == rate else np.clip(soxr.resample(audio.astype(np.float32), rate, target),
                                               -32768, 32767).astype(np.int16)
    if fmt is None:
        return pcm.astype("<i2").tobytes(), target
    # Ogg pages of 20 ms, as a live producer flushes them (FFmpeg's default, 1 s pages, would hold
    # up to 1 s of audio before a page can be checked and decoded).
    return encode(pcm, target, fmt, muxer_options={"page_duration": "20000"} if fmt == "ogg_opus" else None), target


def live_arrivals(data: bytes) -> list[tuple[int, float]]:
    """(byte offset, seconds): the bytes up to the offset as a live producer has written them by
    then, each packet when its audio ends (from FFmpeg's demuxer: packet positions and times)."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        packets = [(p.pos, float((p.pts + p.duration) * p.time_base)) for p in container.demux(stream)
                   if p.pts is not None and p.pos is not None and p.pos >= 0]
    out = []
    for (_, end), (next_pos, _) in zip(packets, packets[1:] + [(len(data), 0.0)]):
        if not out or next_pos > out[-1][0]:
            out.append((next_pos, end))
        else:
            out[-1] = (out[-1][0], end)
    return out


def pieces_of(data: bytes, seconds: float) -> list[bytes]:
    size = max(1, round(len(data) / seconds * PIECE_S))
    return [data[i:i + size] for i in range(0, len(data), size)]


def decode_run(encoding: str, rate: int | None, pieces: list[bytes]) -> float:
    """CPU seconds to decode all pieces."""
    from qwen3_asr_stream.audio.input import AudioDecoder, AudioFormat

    decoder = AudioDecoder(AudioFormat(rate or 0, 1, encoding), max_file_bytes=64 << 20)
    cpu = time.process_time()
    for piece in pieces:
        decoder.decode(piece)
    decoder.finish()
    return time.process_time() - cpu


def live_latency(encoding: str, data: bytes) -> tuple[list[float], list[float]]:
    """The bytes fed as a live producer writes them: per write, the compute time of ``decode()``
    (s) and how far the samples out trail the audio written (s)."""
    from qwen3_asr_stream.audio.input import AudioDecoder, AudioFormat

    decoder = AudioDecoder(AudioFormat(0, 1, encoding))
    compute, held, fed = [], [], 0
    for offset, written_s in live_arrivals(data):
        start = time.perf_counter()
        decoder.decode(data[fed:offset])
        compute.append(time.perf_counter() - start)
        fed = offset
        held.append(written_s - decoder.samples_out / 16000)
    return compute, held


def engine_cpu_per_audio_s(preset: str, model: str | None, seconds: float) -> float:
    """Process CPU seconds per audio second of one real-time stream through the engine."""
    from bench_engine import run_load_once

    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.text_layer import StreamingEngine
    from qwen3_asr_stream.engine.options import EngineOptions
    from qwen3_asr_stream.text.tokenizer import TextTokenizer

    folder = checkpoint(preset, model)
    loaded = load_model(folder, LoadOptions(dtype="float32", device="cpu"))
    options = EngineOptions(max_utterance_s=max(seconds + 5, 30))
    with StreamingEngine(loaded, TextTokenizer.from_folder(folder), options) as engine:
        run_load_once(engine, 1, min(seconds, 3.0))  # warm-up
        cpu = time.process_time()
        run_load_once(engine, 1, seconds)
        return (time.process_time() - cpu) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="asr-0.6b")
    parser.add_argument("--model", help="a checkpoint folder instead of a random one of --preset")
    parser.add_argument("--engine-seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    preset = "tiny-asr" if args.quick else args.preset
    repeats = 3 if args.quick else args.repeats

    audio, rate = speech()
    seconds = len(audio) / rate
    engine_cost = engine_cpu_per_audio_s(preset, args.model, args.engine_seconds)
    rows, record = [], {"engine_preset": preset, "engine_cpu_s_per_audio_s": engine_cost, "audio_s": seconds,
                        "piece_ms": PIECE_S * 1000, "codecs": []}
    latency_rows = []
    for name, fmt, encoding, codec_rate in CODECS:
        data, data_rate = encoded(audio, rate, fmt, codec_rate)
        pieces = pieces_of(data, seconds)
        raw_rate = data_rate if encoding in ("LINEAR16", "MULAW", "ALAW") else None
        costs = [decode_run(encoding, raw_rate, pieces) for _ in range(repeats + 1)][1:]
        cost = statistics.median(costs) / seconds
        entry = {"codec": name, "bytes_per_s": len(data) / seconds, "decode_cpu_ms_per_audio_s": 1000 * cost,
                 "share_of_engine_pct": 100 * cost / engine_cost}
        rows.append([name, round(len(data) / seconds), 1000 * cost, entry["share_of_engine_pct"]])
        if encoding in STREAMED or name in STREAMED:
            compute, held = live_latency(encoding, data)
            entry.update(compute_p50_us=1e6 * percentile(compute, 50), compute_p95_us=1e6 * percentile(compute, 95),
                         held_p50_ms=1e3 * percentile(held, 50), held_p95_ms=1e3 * percentile(held, 95))
            latency_rows.append([name, entry["compute_p50_us"], entry["compute_p95_us"], entry["held_p50_ms"],
                                 entry["held_p95_ms"]])
        record["codecs"].append(entry)
    print_table(f"decode cost per second of audio, {PIECE_S * 1000:.0f} ms pieces (engine: one real-time "
                f"stream of {preset} on CPU, {1000 * engine_cost:.0f} ms CPU per audio s)",
                ["codec", "bytes/s", "decode CPU ms / audio s", "% of engine"], rows)
    print_table("streamed containers, bytes in -> samples out",
                ["codec", "compute p50 us", "compute p95 us", "held p50 ms", "held p95 ms"], latency_rows)
    write_results("codecs" + ("-quick" if args.quick else ""), record)


if __name__ == "__main__":
    main()
