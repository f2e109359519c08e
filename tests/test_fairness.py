"""A stream that sends audio far faster than real time cannot starve real-time streams.

Eight real-time streams run alone, then again beside one stream flooding the same
engine with a long recording as fast as the server reads it. The real-time streams'
final and interim latency (as the server reports it) must stay within a stated
bound of running alone: the flood is read at most ``max_lead_s`` ahead of real time,
and the engine serves the oldest request first.
"""

from __future__ import annotations

import asyncio
import statistics

import pytest

from qwen3_asr_client import AsyncStreamingClient, RecognitionOptions, Result
from conftest import compose

pytest.importorskip("webrtcvad")
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

REALTIME_STREAMS = 8
CHUNK_MS = 100
MAX_LEAD_S = 2.0
# The bound: with the flood, the real-time streams' median latency is at most this many times
# their median alone, plus this many ms (a slot of the engine's batch goes to the flood).
BOUND_FACTOR, BOUND_MS = 2.0, 300


def latencies(items) -> tuple[list[int], list[int]]:
    results = [r for r in items if isinstance(r, Result)]
    return [r.latency_ms for r in results if r.is_final], [r.latency_ms for r in results if not r.is_final]


@pytest.mark.slow
def test_a_flooding_stream_does_not_starve_real_time_streams(engine, phrases):
    a, b, rate = phrases
    speech = compose([a, b], rate)
    flood = compose([a, b] * 20, rate)  # ~2 minutes of speech
    options = RecognitionOptions(interim_results=True, update_interval_ms=500, word_timestamps=False)

    async def realtime(address: str, i: int) -> list:
        async def paced():
            await asyncio.sleep(0.05 * i)
            for chunk in speech.chunks(CHUNK_MS):
                yield chunk
                await asyncio.sleep(CHUNK_MS / 1000)

        async with AsyncStreamingClient(address) as client:
            return [item async for item in client.stream(paced(), speech.format, options)]

    async def flooding(address: str) -> None:
        async with AsyncStreamingClient(address) as client:
            async for _ in client.stream(iter(flood.chunks(CHUNK_MS)), flood.format, options):
                pass

    def run(with_flood: bool) -> tuple[list, float]:
        server_options = ServerOptions(port=0, max_streams=16, max_lead_s=MAX_LEAD_S)
        with ServerThread(server_options, {"tiny": engine}) as server:
            async def main():
                flood_task = asyncio.ensure_future(flooding(server.address)) if with_flood else None
                results = await asyncio.gather(*(realtime(server.address, i) for i in range(REALTIME_STREAMS)))
                lead = 0.0
                if flood_task is not None:
                    # what the server has read of the flood: near real time, however much the client sent
                    leads = [session.lead_s() for session in list(server.server.calls.sessions)]
                    assert leads, "the whole flood was read while the real-time streams ran"
                    lead = max(leads)
                    flood_task.cancel()
                    await asyncio.gather(flood_task, return_exceptions=True)
                return results, lead
            return asyncio.run(main())

    alone, _ = run(False)
    beside, lead = run(True)
    assert 0 < lead <= MAX_LEAD_S + 0.5, lead
    for name, pick in (("final", 0), ("interim", 1)):
        before = statistics.median(x for items in alone for x in latencies(items)[pick])
        after = statistics.median(x for items in beside for x in latencies(items)[pick])
        assert after <= BOUND_FACTOR * before + BOUND_MS, f"{name} latency {after} ms beside the flood, {before} ms alone"
    for items in beside:  # and every real-time stream still gets both of its finals
        assert len(latencies(items)[0]) == 2
