"""End-to-end service latency through gRPC on loopback.

The server (one engine, the aligner) runs in this process; the clients run in a
separate process, so that their work does not share the server's interpreter.
Each client streams utterances of espeak-ng speech (a synthetic stand-in without
espeak-ng) in real time, in ``--chunk-ms`` messages: leading silence, the phrase,
a FINALIZE control right after its last chunk, then silence before the next one.

Measured per utterance:
  final         client clock, from sending FINALIZE (the utterance's last audio is
                already sent) to receiving its final result;
  server        the processing_latency_ms the server reports in that final (from
                the FINALIZE's arrival to the final being ready to send);
  engine        engine turnaround of the final, from ``engine.finish()`` to the
                engine's callback (queueing + compute), measured in the server;
  overhead      final - engine: what the service adds on top of the engine
                (gRPC both ways, session, outbox, and with words the aligner);
  first partial client clock, from sending the chunk where the phrase's sound
                starts to the utterance's first interim result (includes the
                interim cadence, ``--update-interval-ms`` of audio);
  partial srv   processing_latency_ms of that first interim (from the arrival of
                the newest audio it covers).

Runs 1 and 32 concurrent streams (``--streams``), each with and without word
timestamps. Medians and p95; JSON in benchmarks/results/service.json
(service-quick.json with --quick, which finishes in well under a minute on CPU).

    python benchmarks/bench_service.py [--model DIR] [--aligner DIR] [--device cpu] \\
        [--streams 1,32] [--utterances 6] [--chunk-ms 50] [--update-interval-ms 500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path

from common import checkpoint, percentile, print_table, write_results

import numpy as np

RATE = 16_000
PHRASES = (
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a test",
    "streaming speech recognition gives results while you speak",
    "please call me back tomorrow morning",
)
LEAD_S, GAP_S = 0.3, 0.8


# --------------------------------------------------------------------------- audio


def phrases_audio() -> tuple[list[np.ndarray], str]:
    """16 kHz int16 phrases: espeak-ng when present, else gliding tones shaped like words."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        rng = np.random.default_rng(0)
        out = []
        for text in PHRASES:
            n = int(0.3 * len(text.split()) * RATE)
            t = np.arange(n) / RATE
            tone = sum(0.15 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) for _ in range(3))
            out.append((tone * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 32767 * 0.5).astype(np.int16))
        return out, "synthetic tones (espeak-ng not installed)"
    import soxr

    out = []
    with tempfile.TemporaryDirectory() as folder:
        for i, text in enumerate(PHRASES):
            path = Path(folder) / f"{i}.wav"
            subprocess.run([exe, "-v", "en-us", "-s", "160", "-w", str(path), text], check=True, capture_output=True)
            with wave.open(str(path)) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
                rate = w.getframerate()
            out.append((np.clip(soxr.resample(pcm, rate, RATE), -1, 1) * 32767).astype(np.int16))
    return out, "espeak-ng en-us"


# --------------------------------------------------------------------------- clients (own process)


async def one_stream(address: str, index: int, phrases: list[np.ndarray], config: dict) -> list[dict]:
    import grpc

    from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

    chunk = int(RATE * config["chunk_ms"] / 1000)
    period = config["chunk_ms"] / 1000
    records = [dict(stream=index, utterance=u) for u in range(config["utterances"])]
    await asyncio.sleep(config["stagger_s"] * index)
    async with grpc.aio.insecure_channel(address) as channel:
        call = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize()
        await call.write(asr_pb2.StreamingRecognizeRequest(streaming_config=asr_pb2.StreamingRecognitionConfig(
            config=asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR_PCM, sample_rate_hertz=RATE,
                                             audio_channel_count=1, language_code="English",
                                             enable_word_time_offsets=config["words"],
                                             diarization=asr_pb2.DiarizationConfig(
                                                 enable=config.get("diarization", False))),
            interim_results=True, update_interval_ms=config["update_interval_ms"])))

        async def send() -> None:
            clock = time.perf_counter()

            async def paced(samples: np.ndarray, mark_sound: dict | None = None) -> None:
                nonlocal clock
                sound = np.nonzero(np.abs(samples.astype(np.int32)) > 300)[0]
                first = int(sound[0]) if len(sound) else None
                for start in range(0, len(samples), chunk):
                    clock += period
                    await asyncio.sleep(max(0.0, clock - time.perf_counter()))
                    await call.write(asr_pb2.StreamingRecognizeRequest(
                        audio_content=samples[start : start + chunk].tobytes()))
                    if mark_sound is not None and first is not None and start <= first < start + chunk:
                        mark_sound["sound_sent"] = time.perf_counter()

            silence = lambda s: np.zeros(int(s * RATE), np.int16)  # noqa: E731
            await paced(silence(LEAD_S))
            for u, record in enumerate(records):
                await paced(phrases[(index + u) % len(phrases)], record)
                await call.write(asr_pb2.StreamingRecognizeRequest(
                    control=asr_pb2.Control(kind=asr_pb2.Control.FINALIZE)))
                record["finalize_sent"] = time.perf_counter()
                await paced(silence(GAP_S))
            await call.done_writing()

        sender = asyncio.ensure_future(send())
        async for response in call:
            now = time.perf_counter()
            for result in response.results:
                record = records[result.utterance_index] if result.utterance_index < len(records) else None
                if record is None:
                    continue
                if result.is_final:
                    record.update(final_received=now, final_server_ms=result.processing_latency_ms,
                                  words=len(result.words),
                                  speaker=result.speaker if result.HasField("speaker") else None)
                elif "partial_received" not in record:
                    record.update(partial_received=now, partial_server_ms=result.processing_latency_ms)
        await sender
    return records


def client_process(address: str, phrases: list[np.ndarray], conn) -> None:
    """Runs each configuration the parent sends; answers with the per-utterance records."""
    while (config := conn.recv()) is not None:
        async def run():
            return await asyncio.gather(*(one_stream(address, i, phrases, config) for i in range(config["streams"])))
        conn.send([r for stream in asyncio.run(run()) for r in stream])


# --------------------------------------------------------------------------- server side


class EngineProbe:
    """Engine turnaround of each final (finish() -> callback) and compute of each update."""

    def __init__(self, engine) -> None:
        self.lock = threading.Lock()
        self.finish_at: dict[int, float] = {}
        self.reset()
        open_, finish = engine.open, engine.finish

        def probed_open(options, callback):
            def wrapped(result):
                now = time.perf_counter()
                with self.lock:
                    if result.is_final:
                        started = self.finish_at.pop(result.utterance_id, now)
                        self.finals.append((now - started, result.compute_s))
                    else:
                        self.interim_compute.append(result.compute_s)
                callback(result)
            return open_(options, wrapped)

        def probed_finish(utterance_id):
            with self.lock:
                self.finish_at[utterance_id] = time.perf_counter()
            finish(utterance_id)

        engine.open, engine.finish = probed_open, probed_finish

    def reset(self) -> None:
        with self.lock:
            self.finals: list[tuple[float, float]] = []
            self.interim_compute: list[float] = []


def summarize(records: list[dict], probe: EngineProbe) -> dict:
    def ms(values):
        values = [1000 * v for v in values]
        return {"median": statistics.median(values) if values else float("nan"),
                "p95": percentile(values, 95), "n": len(values)}

    final = [r["final_received"] - r["finalize_sent"] for r in records if "final_received" in r]
    partial = [r["partial_received"] - r["sound_sent"] for r in records if "partial_received" in r and "sound_sent" in r]
    out = {
        "utterances": len(records),
        "finals_received": len(final),
        "final_ms": ms(final),
        "final_server_ms": ms([r["final_server_ms"] / 1000 for r in records if "final_server_ms" in r]),
        "engine_final_ms": ms([t for t, _ in probe.finals]),
        "engine_final_compute_ms": ms([c for _, c in probe.finals]),
        "engine_interim_compute_ms": ms(probe.interim_compute),
        "first_partial_ms": ms(partial),
        "first_partial_server_ms": ms([r["partial_server_ms"] / 1000 for r in records if "partial_server_ms" in r]),
        "words_per_final": statistics.mean([r.get("words", 0) for r in records]) if records else 0,
    }
    out["overhead_ms"] = out["final_ms"]["median"] - out["engine_final_ms"]["median"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ASR checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--aligner", help="aligner checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--streams", default="1,32", help="comma-separated concurrency levels")
    parser.add_argument("--utterances", type=int, default=6, help="utterances per stream")
    parser.add_argument("--chunk-ms", type=int, default=50)
    parser.add_argument("--update-interval-ms", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2 utterances per stream: well under a minute on CPU")
    args = parser.parse_args()
    if args.quick:
        args.utterances = 2

    from qwen3_asr_stream.checkpoint import LoadOptions
    from qwen3_asr_stream.testing.harness import ServerThread, load_aligner, load_engine
    from qwen3_asr_stream.server.options import ServerOptions

    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    load = LoadOptions(dtype=dtype, device=args.device)
    levels = [int(n) for n in args.streams.split(",")]
    options = ServerOptions(port=0, max_streams=max(levels))
    engine = load_engine(str(checkpoint("tiny-asr", args.model, dtype="float32")), options, load)
    aligner = load_aligner(str(checkpoint("tiny-aligner", args.aligner, dtype="float32")), load)
    probe = EngineProbe(engine)
    phrases, source = phrases_audio()
    results, rows = [], []
    with ServerThread(options, {"asr": engine}, aligner) as server:
        parent, child = mp.get_context("spawn").Pipe()
        client = mp.get_context("spawn").Process(target=client_process, args=(server.address, phrases, child))
        client.start()
        try:
            for streams in levels:
                for words in (False, True):
                    cycle = sum(len(p) for p in phrases) / RATE / len(phrases) + GAP_S
                    config = dict(streams=streams, words=words, utterances=args.utterances, chunk_ms=args.chunk_ms,
                                  update_interval_ms=args.update_interval_ms, stagger_s=cycle / streams)
                    probe.reset()
                    started = time.perf_counter()
                    parent.send(config)
                    records = parent.recv()
                    summary = {**config, "wall_s": time.perf_counter() - started, **summarize(records, probe)}
                    results.append(summary)
                    rows.append([streams, "on" if words else "off", summary["final_ms"]["median"],
                                 summary["final_ms"]["p95"], summary["final_server_ms"]["median"],
                                 summary["engine_final_ms"]["median"], summary["overhead_ms"],
                                 summary["first_partial_ms"]["median"], summary["first_partial_ms"]["p95"],
                                 summary["first_partial_server_ms"]["median"],
                                 f"{summary['finals_received']}/{summary['utterances']}"])
        finally:
            parent.send(None)
            client.join(30)
    engine.close()
    print_table(f"service latency, ms (loopback gRPC, {args.chunk_ms} ms chunks in real time, interims every "
                f"{args.update_interval_ms} ms, {source}, device {args.device})",
                ["streams", "words", "final p50", "final p95", "server p50", "engine p50", "overhead p50",
                 "1st partial p50", "1st partial p95", "partial srv p50", "finals"], rows)
    write_results("service-quick" if args.quick else "service", {
        "model": args.model or "random tiny-asr", "aligner": args.aligner or "random tiny-aligner",
        "device": args.device, "dtype": dtype, "audio": source, "runs": results,
    })


if __name__ == "__main__":
    main()
