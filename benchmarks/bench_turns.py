"""Early end of turn on Deepgram's /v2/listen: end of speech -> EagerEndOfTurn and -> EndOfTurn.

One server (HTTP, one engine) runs in a thread of this process; the clients run on this
process's event loop (aiohttp, plain JSON). Each stream sends, in real time in 20 ms
pieces, turns of two eSpeak NG phrases with a mid-sentence pause of ``PAUSE_S`` between
them and ``TAIL_S`` of silence after. Per turn, on the client clock, from sending the
piece that holds the last audible sample of the turn:

    eager   -> the EagerEndOfTurn after it (the pause of ``eager_pause_ms`` was seen, and
               the transcript so far decoded)
    final   -> the EndOfTurn (the full endpoint of the silence, and the final decode)

An eager event is sent only while its turn is still open: when the engine is so loaded
that the decode at the pause finishes after the endpoint, the final comes without one
("eager sent" counts the turns that got one after the end of speech).

Each concurrency level runs rounds with the early end of turn on and off alternately
(ABBA); "final (off)" is the baseline: the same streams without eager events.

    python benchmarks/bench_turns.py [--model DIR] [--streams 1,32] [--turns 3] [--rounds 2] [--stagger-s 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from common import checkpoint, percentile, print_table, write_results

RATE = 16_000
CHUNK_MS = 20
LEAD_S, PAUSE_S, TAIL_S = 0.3, 0.45, 1.5
TEXTS = (("the quick brown fox", "jumps over the lazy dog"), ("hello world", "this is a test"),
         ("please call me back", "tomorrow morning"))


def turn_audio() -> list[tuple[np.ndarray, int]]:
    """(int16 16 kHz audio of a turn, the sample after its last audible one) per turn text."""
    import soxr

    from qwen3_asr_stream.testing.speech import synthesize

    def spoken(text: str) -> np.ndarray:
        audio, rate = synthesize(text)
        audio = soxr.resample(audio, rate, RATE) if rate != RATE else audio
        audible = np.nonzero(np.abs(audio) > 0.01)[0]
        return (audio[audible[0]:audible[-1] + 1] * 32767).astype(np.int16)

    z = lambda s: np.zeros(int(s * RATE), np.int16)  # noqa: E731
    out = []
    for first, second in TEXTS:
        speech = np.concatenate([spoken(first), z(PAUSE_S), spoken(second)])
        out.append((np.concatenate([z(LEAD_S), speech, z(TAIL_S)]), int(LEAD_S * RATE) + len(speech)))
    return out


async def stream(base: str, turns, count: int, eager: bool, records: list, delay_s: float) -> None:
    import aiohttp

    await asyncio.sleep(delay_s)  # streams start at different times, as a server's callers do
    query = "&eager_eot_threshold=0.5" if eager else ""
    chunk = RATE * CHUNK_MS // 1000
    async with aiohttp.ClientSession(base) as session:
        async with session.ws_connect(f"/v2/listen?encoding=linear16&sample_rate={RATE}{query}") as ws:
            ends: list[float] = []  # client time the last audible piece of each turn went out

            async def feed():
                clock = time.perf_counter()
                for k in range(count):
                    audio, end = turns[k % len(turns)]
                    for start in range(0, len(audio), chunk):
                        clock += CHUNK_MS / 1000
                        await asyncio.sleep(max(0.0, clock - time.perf_counter()))
                        await ws.send_bytes(audio[start:start + chunk].tobytes())
                        if start < end <= start + chunk:
                            ends.append(time.perf_counter())
                await ws.send_str(json.dumps({"type": "CloseStream"}))

            feeder = asyncio.create_task(feed())
            turn_eager: dict[int, float] = {}
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                event, now = json.loads(message.data), time.perf_counter()
                if event.get("type") != "TurnInfo":
                    continue
                index = event["turn_index"]
                spoken_end = ends[index] if index < len(ends) else None
                if event["event"] == "EagerEndOfTurn" and spoken_end is not None and now >= spoken_end:
                    turn_eager.setdefault(index, now - spoken_end)
                elif event["event"] == "TurnResumed":
                    turn_eager.pop(index, None)
                elif event["event"] == "EndOfTurn" and spoken_end is not None:
                    records.append({"eager": eager, "eager_s": turn_eager.get(index), "final_s": now - spoken_end,
                                    "turn": index})
            await feeder


def summary(records: list[dict], key: str) -> tuple[float, float, int]:
    values = [r[key] for r in records if r[key] is not None]
    return 1000 * percentile(values, 50), 1000 * percentile(values, 95), len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: a random tiny one)")
    parser.add_argument("--preset", default="tiny-asr")
    parser.add_argument("--streams", default="1,32")
    parser.add_argument("--turns", type=int, default=3, help="turns per stream per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode (eager on / off, ABBA)")
    parser.add_argument("--stagger-s", type=float, default=4.0,
                        help="streams start at random times within this (0: all at once, pauses in step)")
    args = parser.parse_args()

    from qwen3_asr_stream.server.options import ServerOptions
    from qwen3_asr_stream.testing.harness import ServerThread, load_engine

    turns = turn_audio()
    path = checkpoint(args.preset, args.model)
    levels = [int(n) for n in args.streams.split(",")]
    options = ServerOptions(port=0, http_port=_free_port(), max_streams=max(levels) + 1)
    engine = load_engine(str(path), options)
    rows, results = [], []
    with ServerThread(options, {"asr": engine}) as server:
        base = f"http://127.0.0.1:{server.server.http_port}"
        for n in levels:
            records: list[dict] = []
            for r in range(2 * args.rounds):
                eager = (r % 4) in (0, 3)  # ABBA
                batch: list[dict] = []

                delays = np.random.default_rng(r).uniform(0, args.stagger_s if n > 1 else 0, n)

                async def level():
                    await asyncio.gather(*(stream(base, turns, args.turns, eager, batch, d) for d in delays))

                asyncio.run(level())
                records += batch
            on = [r for r in records if r["eager"]]
            off = [r for r in records if not r["eager"]]
            e50, e95, en = summary(on, "eager_s")
            f50, f95, fn = summary(on, "final_s")
            b50, b95, bn = summary(off, "final_s")
            rows.append([n, fn, en, e50, e95, f50, f95, b50, b95])
            results.append({"streams": n, "eager_ms": {"p50": e50, "p95": e95, "n": en},
                            "final_ms": {"p50": f50, "p95": f95, "n": fn},
                            "final_without_eager_ms": {"p50": b50, "p95": b95, "n": bn}})
    engine.close()
    print_table(f"end of speech -> event, ms (client clock; {args.preset} model, {engine.model.device.type})",
                ["streams", "turns", "eager sent", "eager p50", "eager p95", "final p50", "final p95", "final (off) p50",
                 "final (off) p95"], rows)
    write_results("bench_turns", {"preset": args.preset, "model": str(path), "pause_s": PAUSE_S, "tail_s": TAIL_S,
                                  "stagger_s": args.stagger_s,
                                  "levels": results})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
