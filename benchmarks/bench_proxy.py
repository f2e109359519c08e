"""What a proxy in front of the replicas costs: stream set-up rate and latency per final,
through Debian's nginx and HAProxy (the shipped configurations in deploy/proxies) and
directly to the replicas.

    python benchmarks/bench_proxy.py [--model DIR] [--quick]

Three ``qwen3-asr-stream serve`` replicas (a random tiny checkpoint unless --model)
run on loopback, with nginx and HAProxy in front.

* set-up rate: streams opened, configured, given 100 ms of silence and half-closed,
  until their OK status, by 8 concurrent clients (each on its own connection);
  direct clients go to the replicas in turn.
* latency per final: one utterance (espeak-ng speech) sent at once, then 0.5 s of
  waiting (the server has processed the audio), then half-close; the time from the
  half-close to the final. Targets are measured in turn (direct, nginx, HAProxy,
  direct, ...), so machine noise hits all alike; p50 / p95 and the added median.
* hop: round trip of the unary GetSpeechRecognitionConfig (no model work), p50, in
  turn across the targets: what the proxy hop itself adds, below the noise of the
  finals on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import checkpoint, percentile, print_table, write_results

import grpc
import grpc.aio

from qwen3_asr_client import AudioFormat, RecognitionOptions
from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc
from qwen3_asr_stream.testing.fleet import HAProxy, Nginx, Replica

RATE = 16000
OPTIONS = RecognitionOptions(language="English", word_timestamps=False, interim_results=False)


def speech() -> bytes:
    import soundfile
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), "the quick brown fox jumps"],
                       check=True, capture_output=True)
        samples, rate = soundfile.read(path, dtype="float32")
    samples = soxr.resample(samples, rate, RATE)
    silence = np.zeros(RATE * 3 // 10, np.float32)
    return (np.concatenate([silence, samples]) * 32767).astype("<i2").tobytes()


async def one_stream(stub, audio: bytes, wait_s: float) -> tuple[grpc.StatusCode, float | None]:
    """(status, seconds from half-close to the first final)."""
    marks: dict[str, float] = {}

    async def requests():
        yield OPTIONS.streaming_request(AudioFormat(RATE))
        for i in range(0, len(audio), 3200):
            yield asr_pb2.StreamingRecognizeRequest(audio_content=audio[i:i + 3200])
        if wait_s:
            await asyncio.sleep(wait_s)
        marks["half_close"] = time.perf_counter()

    call = stub.StreamingRecognize(requests())
    async for response in call:
        if "final" not in marks and any(r.is_final for r in response.results):
            marks["final"] = time.perf_counter()
    code = await call.code()
    latency = marks["final"] - marks["half_close"] if "final" in marks and "half_close" in marks else None
    return code, latency


async def setup_rate(addresses: list[str], streams: int, workers: int = 8) -> float:
    """Streams per second, ``workers`` clients at once, each on its own channel."""
    silence = bytes(3200)
    targets = itertools.cycle(addresses)
    channels = [grpc.aio.insecure_channel(next(targets)) for _ in range(workers)]
    stubs = [asr_pb2_grpc.SpeechRecognitionStub(c) for c in channels]
    for stub in stubs:  # connect first
        assert (await one_stream(stub, silence, 0))[0] == grpc.StatusCode.OK
    counter = itertools.count()
    failures = []

    async def worker(stub):
        while next(counter) < streams:
            code, _ = await one_stream(stub, silence, 0)
            if code != grpc.StatusCode.OK:
                failures.append(code)

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in stubs))
    elapsed = time.perf_counter() - started
    for c in channels:
        await c.close()
    if failures:
        raise RuntimeError(f"{len(failures)} streams failed: {failures[:3]}")
    return streams / elapsed


async def final_latencies(targets: dict[str, list[str]], audio: bytes, samples: int) -> dict[str, list[float]]:
    channels = {name: [grpc.aio.insecure_channel(a) for a in addresses] for name, addresses in targets.items()}
    stubs = {name: itertools.cycle([asr_pb2_grpc.SpeechRecognitionStub(c) for c in cs]) for name, cs in channels.items()}
    out: dict[str, list[float]] = {name: [] for name in targets}
    for name in targets:  # warm up every connection
        for _ in channels[name]:
            await one_stream(next(stubs[name]), audio, 0.5)
    for _ in range(samples):
        for name in targets:
            code, latency = await one_stream(next(stubs[name]), audio, 0.5)
            if code != grpc.StatusCode.OK or latency is None:
                raise RuntimeError(f"{name}: {code}, no final")
            out[name].append(latency)
    for cs in channels.values():
        for c in cs:
            await c.close()
    return out


async def round_trips(targets: dict[str, list[str]], calls: int) -> dict[str, list[float]]:
    channels = {name: grpc.aio.insecure_channel(addresses[0]) for name, addresses in targets.items()}
    stubs = {name: asr_pb2_grpc.SpeechRecognitionStub(c) for name, c in channels.items()}
    request = asr_pb2.GetSpeechRecognitionConfigRequest()
    out: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(calls + 20):
        for name, stub in stubs.items():
            started = time.perf_counter()
            await stub.GetSpeechRecognitionConfig(request)
            if i >= 20:  # warm-up
                out[name].append(time.perf_counter() - started)
    for c in channels.values():
        await c.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ASR checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--samples", type=int, default=40, help="finals per target")
    parser.add_argument("--setup-streams", type=int, default=300, help="streams per target for the set-up rate")
    parser.add_argument("--quick", action="store_true", help="10 finals and 60 streams per target")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.setup_streams = 10, 60
    for exe in ("nginx", "haproxy", "espeak-ng"):
        if not (shutil.which(exe) or Path(f"/usr/sbin/{exe}").exists()):
            raise SystemExit(f"{exe} is not installed (apt-get install {exe})")
    model = checkpoint("tiny-asr", args.model)
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    replicas = [Replica(model, work, name=f"r{i}", args=("--max-streams", "64")) for i in range(3)]
    proxies = []
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        proxies = [Nginx(replicas, work / "nginx").start(), HAProxy(replicas, work / "haproxy").start()]
        time.sleep(2.5)  # HAProxy's first health checks
        targets = {"direct": [r.address for r in replicas], "nginx": [proxies[0].address],
                   "haproxy": [proxies[1].address]}
        audio = speech()

        rates = {name: asyncio.run(setup_rate(addresses, args.setup_streams)) for name, addresses in targets.items()}
        latencies = asyncio.run(final_latencies(targets, audio, args.samples))
        hops = asyncio.run(round_trips(targets, 10 * args.samples))
    finally:
        for p in proxies:
            p.stop()
        for r in replicas:
            r.stop()

    base = statistics.median(latencies["direct"])
    rows, payload = [], {"setup_streams": args.setup_streams, "samples": args.samples, "targets": {}}
    for name in targets:
        ms = [1000 * v for v in latencies[name]]
        p50, p95 = percentile(ms, 50), percentile(ms, 95)
        added = statistics.median(ms) - 1000 * base
        hop = 1000 * statistics.median(hops[name])
        rows.append([name, rates[name], p50, p95, added, hop])
        payload["targets"][name] = {"setup_streams_per_s": rates[name], "final_latency_ms_p50": p50,
                                    "final_latency_ms_p95": p95, "added_median_ms": added, "latencies_ms": ms,
                                    "unary_round_trip_ms_p50": hop}
    print_table("3 replicas on loopback, tiny model (8 concurrent clients for set-up; finals one at a time)",
                ["target", "set-up streams/s", "final p50 ms", "final p95 ms", "added median ms", "unary RTT p50 ms"],
                rows)
    write_results("bench_proxy", payload)


if __name__ == "__main__":
    main()
