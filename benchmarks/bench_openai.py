"""The same streams through the OpenAI Realtime WebSocket and through gRPC: final latency.

One server (gRPC + HTTP on one event loop, one engine) runs in this process; the
clients run in a separate process. Each stream sends espeak-ng phrases in real time in
``--chunk-ms`` pieces: leading silence, a phrase, the end of the turn right after its
last piece (gRPC: a FINALIZE control; WebSocket: ``input_audio_buffer.commit``), then
silence before the next phrase. Both protocols use the same endpointing and settings
(interim results on, words off unless ``--words``).

Measured per utterance, client clock: from sending the end of the turn to receiving
the final (gRPC: the final result; WebSocket: ``...transcription.completed``); and the
part of it outside the latency the server reports in that final ("out": the end of
the turn reaching the session, the result going out through the adapter and the
socket, client parsing), which takes the engine's variance out of the comparison. Each
concurrency level runs gRPC and WebSocket rounds alternately (ABBA), so drift hits
both alike; the table gives p50 / p95 per protocol and the WebSocket's difference.
The WebSocket client is aiohttp with plain JSON (the SDK's own parsing is client
cost, not the server's).

    python benchmarks/bench_openai.py [--model DIR] [--streams 1,32] [--utterances 4] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import socket
import statistics
import time

import numpy as np

from bench_service import GAP_S, LEAD_S, RATE, phrases_audio
from common import checkpoint, percentile, print_table, write_results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def paced_stream(index: int, phrases: list[np.ndarray], config: dict, send_audio, end_turn, records) -> None:
    chunk = int(RATE * config["chunk_ms"] / 1000)
    period = config["chunk_ms"] / 1000
    clock = time.perf_counter()

    async def paced(samples: np.ndarray) -> None:
        nonlocal clock
        for start in range(0, len(samples), chunk):
            clock += period
            await asyncio.sleep(max(0.0, clock - time.perf_counter()))
            await send_audio(samples[start:start + chunk].tobytes())

    silence = lambda s: np.zeros(int(s * RATE), np.int16)  # noqa: E731
    await paced(silence(LEAD_S))
    for u, record in enumerate(records):
        await paced(phrases[(index + u) % len(phrases)])
        await end_turn()
        record["end_sent"] = time.perf_counter()
        await paced(silence(GAP_S))


async def grpc_stream(config: dict, index: int, phrases: list[np.ndarray]) -> list[dict]:
    import grpc

    from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

    records = [dict(stream=index, utterance=u) for u in range(config["utterances"])]
    await asyncio.sleep(config["stagger_s"] * index)
    async with grpc.aio.insecure_channel(config["grpc"]) as channel:
        call = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize()
        await call.write(asr_pb2.StreamingRecognizeRequest(streaming_config=asr_pb2.StreamingRecognitionConfig(
            config=asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR_PCM, sample_rate_hertz=RATE,
                                             audio_channel_count=1, language_code="en",
                                             enable_word_time_offsets=config["words"]),
            interim_results=True, update_interval_ms=config["update_interval_ms"])))

        async def send_audio(data: bytes) -> None:
            await call.write(asr_pb2.StreamingRecognizeRequest(audio_content=data))

        async def end_turn() -> None:
            await call.write(asr_pb2.StreamingRecognizeRequest(control=asr_pb2.Control(kind=asr_pb2.Control.FINALIZE)))

        async def send() -> None:
            await paced_stream(index, phrases, config, send_audio, end_turn, records)
            await call.done_writing()

        sender = asyncio.ensure_future(send())
        async for response in call:
            now = time.perf_counter()
            for r in response.results:
                if r.is_final and r.utterance_index < len(records):
                    records[r.utterance_index].update(final_received=now, server_ms=r.processing_latency_ms)
        await sender
    return records


async def ws_stream(config: dict, index: int, phrases: list[np.ndarray]) -> list[dict]:
    import aiohttp

    records = [dict(stream=index, utterance=u) for u in range(config["utterances"])]
    await asyncio.sleep(config["stagger_s"] * index)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(config["ws"]) as ws:
            await ws.receive_json()  # session.created
            await ws.send_json({"type": "session.update", "session": {
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                                    "transcription": {"language": "en",
                                                      "update_interval_ms": config["update_interval_ms"]},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 600,
                                                       "prefix_padding_ms": 300, "threshold": 0.5}}},
                "include": ["item.input_audio_transcription.words"] if config["words"] else []}})
            await ws.receive_json()  # session.updated

            async def send_audio(data: bytes) -> None:
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append",
                                              "audio": base64.b64encode(data).decode()}))

            async def end_turn() -> None:
                await ws.send_str('{"type": "input_audio_buffer.commit"}')

            sender = asyncio.ensure_future(paced_stream(index, phrases, config, send_audio, end_turn, records))
            items: list[str] = []
            finals = 0
            while finals < len(records):
                message = await ws.receive()
                now = time.perf_counter()
                if message.type != aiohttp.WSMsgType.TEXT:
                    print(f"stream {index}: the server closed the session: {message.data} {message.extra}", flush=True)
                    break
                event = json.loads(message.data)
                if event["type"] == "error":
                    print(f"stream {index}: {event['error']}", flush=True)
                if event["type"] == "input_audio_buffer.committed":
                    items.append(event["item_id"])
                elif event["type"] == "conversation.item.input_audio_transcription.completed":
                    u = items.index(event["item_id"])
                    if u < len(records):
                        records[u].update(final_received=now, server_ms=event["latency_ms"])
                    finals += 1
            if finals < len(records):
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    return records


def client_process(phrases: list[np.ndarray], conn) -> None:
    while (config := conn.recv()) is not None:
        one = grpc_stream if config["protocol"] == "grpc" else ws_stream

        async def run():
            return await asyncio.gather(*(one(config, i, phrases) for i in range(config["streams"])))

        conn.send([r for stream in asyncio.run(run()) for r in stream])


def latencies(records: list[dict]) -> list[tuple[float, float]]:
    """(client final latency, its part outside the server's reported latency), ms, per utterance."""
    out = []
    for r in records:
        if "final_received" in r:
            total = 1000 * (r["final_received"] - r["end_sent"])
            out.append((total, total - r["server_ms"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ASR checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--aligner", help="aligner checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--streams", default="1,32")
    parser.add_argument("--utterances", type=int, default=4, help="utterances per stream and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per protocol, alternating (ABBA)")
    parser.add_argument("--chunk-ms", type=int, default=50)
    parser.add_argument("--update-interval-ms", type=int, default=500)
    parser.add_argument("--words", action="store_true", help="word times on (adds the aligner to both)")
    parser.add_argument("--quick", action="store_true", help="2 utterances, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.utterances, args.rounds = 2, 2

    from qwen3_asr_stream.checkpoint import LoadOptions
    from qwen3_asr_stream.testing.harness import ServerThread, load_aligner, load_engine
    from qwen3_asr_stream.server.options import ServerOptions

    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    load = LoadOptions(dtype=dtype, device=args.device)
    levels = [int(n) for n in args.streams.split(",")]
    options = ServerOptions(port=0, http_port=free_port(), max_streams=max(levels))
    engine = load_engine(str(checkpoint("tiny-asr", args.model, dtype="float32")), options, load)
    aligner = load_aligner(str(checkpoint("tiny-aligner", args.aligner, dtype="float32")), load) if args.words else None
    phrases, source = phrases_audio()
    rows, runs = [], []
    with ServerThread(options, {"asr": engine}, aligner) as server:
        endpoints = {"grpc": server.address,
                     "ws": f"ws://127.0.0.1:{server.server.http_port}/v1/realtime?intent=transcription"}
        parent, child = mp.get_context("spawn").Pipe()
        client = mp.get_context("spawn").Process(target=client_process, args=(phrases, child))
        client.start()
        try:
            for streams in levels:
                cycle = sum(len(p) for p in phrases) / RATE / len(phrases) + GAP_S
                measured = {"grpc": [], "ws": []}
                order = ["grpc", "ws", "ws", "grpc"] * ((args.rounds + 1) // 2)
                for protocol in order[:2 * args.rounds]:
                    config = dict(protocol=protocol, streams=streams, words=args.words, utterances=args.utterances,
                                  chunk_ms=args.chunk_ms, update_interval_ms=args.update_interval_ms,
                                  stagger_s=cycle / streams, **endpoints)
                    parent.send(config)
                    measured[protocol] += latencies(parent.recv())
                summary = {"streams": streams, "grpc": measured["grpc"], "ws": measured["ws"]}
                for name in ("grpc", "ws"):
                    for i, part in enumerate(("", "_outside")):
                        values = [m[i] for m in measured[name]]
                        summary[f"{name}{part}_p50"] = statistics.median(values) if values else float("nan")
                        summary[f"{name}{part}_p95"] = percentile(values, 95)
                runs.append(summary)
                rows.append([streams, len(measured["grpc"]), summary["grpc_p50"], summary["grpc_p95"],
                             len(measured["ws"]), summary["ws_p50"], summary["ws_p95"],
                             summary["ws_p50"] - summary["grpc_p50"], summary["ws_p95"] - summary["grpc_p95"],
                             summary["grpc_outside_p50"], summary["ws_outside_p50"],
                             summary["ws_outside_p50"] - summary["grpc_outside_p50"]])
        finally:
            parent.send(None)
            client.join(30)
    engine.close()
    print_table(f"final latency after the end of the turn, ms (loopback, {args.chunk_ms} ms chunks in real time, "
                f"interims every {args.update_interval_ms} ms, words {'on' if args.words else 'off'}, {source}, "
                f"device {args.device})",
                ["streams", "n grpc", "gRPC p50", "gRPC p95", "n ws", "WS p50", "WS p95", "WS-gRPC p50",
                 "WS-gRPC p95", "gRPC out p50", "WS out p50", "WS-gRPC out p50"], rows)
    print("out: the part of the client's latency outside the server's reported latency (the protocol's "
          "share: adapter, framing, loopback, client parsing)")
    write_results("openai-quick" if args.quick else "openai", {
        "model": args.model or "random tiny-asr", "device": args.device, "dtype": dtype, "audio": source,
        "words": args.words, "runs": runs})


if __name__ == "__main__":
    main()
