"""Three real replicas (``qwen3-asr-stream serve`` processes on tiny random checkpoints)
behind Debian's nginx and HAProxy, run with the shipped configurations from
deploy/proxies: per-call least-connections balancing, the drain on SIGTERM as the
proxies see it, status codes passed through unchanged, and a resumable client that
survives a replica killed with SIGKILL.

One replica set serves the whole module (a replica that a test stops is started
again on the same ports); each test gets a fresh proxy process.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from dataclasses import dataclass, field

import grpc
import grpc.aio
import numpy as np
import pytest

from qwen3_asr_client import AudioFormat, RecognitionOptions
from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc
from qwen3_asr_stream.session.calls import SHUTDOWN_MESSAGE
from qwen3_asr_stream.testing.fleet import HAProxy, Nginx, Replica

from conftest import synthesize, wait_until_async

pytestmark = pytest.mark.slow

RATE = 16000
CHUNK_BYTES = 3200  # 100 ms of 16-bit mono
GRACE_S = 10.0
MAX_MESSAGE_BYTES = 8192
MAX_STREAM_SECONDS = 30
REPLICA_ARGS = ("--max-stream-seconds", str(MAX_STREAM_SECONDS), "--max-message-bytes", str(MAX_MESSAGE_BYTES),
                "--idle-timeout", "10", "--update-interval-ms", "500", "--max-streams", "8")
PROXIES = {"nginx": Nginx, "haproxy": HAProxy}


def pcm(seconds: float) -> bytes:
    return np.zeros(int(seconds * RATE), "<i2").tobytes()


@pytest.fixture(scope="module")
def phrase(espeak, tmp_path_factory) -> bytes:
    """About 1.3 s of synthesized speech, 16 kHz 16-bit mono."""
    import soundfile
    import soxr

    path = synthesize(espeak, "the quick brown fox jumps", tmp_path_factory.mktemp("speech") / "phrase.wav")
    samples, rate = soundfile.read(path, dtype="float32")
    samples = soxr.resample(samples, rate, RATE)
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def speech(phrase) -> bytes:
    """Three utterances: 0.5 s of silence, then (phrase, 1 s of silence) three times (about 7 s)."""
    return pcm(0.5) + (phrase + pcm(1.0)) * 3


@pytest.fixture(scope="module")
def fleet(checkpoints, tmp_path_factory):
    logs = tmp_path_factory.mktemp("replicas")
    replicas = [Replica(checkpoints["asr"], logs, grace_s=GRACE_S, args=REPLICA_ARGS, name=f"r{i}") for i in range(3)]
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        yield replicas
    finally:
        for r in replicas:
            r.stop()


def running(fleet: list[Replica]) -> list[Replica]:
    """Start again any replica a test stopped; wait until all are ready."""
    for r in fleet:
        if r.process.poll() is not None:
            r.start()
    for r in fleet:
        r.wait_ready()
    return fleet


@pytest.fixture(params=sorted(PROXIES))
def proxy(request, fleet, tmp_path):
    proxy = PROXIES[request.param](running(fleet), tmp_path / request.param).start()
    try:
        yield proxy
    finally:
        proxy.stop()


# --------------------------------------------------------------------------- a raw stream


@dataclass
class Outcome:
    code: grpc.StatusCode | None = None
    details: str = ""
    items: list = field(default_factory=list)  # (monotonic time, "start" | "final", utterance, start_ms, end_ms)

    @property
    def finals(self) -> list:
        return [i for i in self.items if i[1] == "final"]

    @property
    def started(self) -> set[int]:
        return {i[2] for i in self.items if i[1] == "start"}


async def run_stream(address: str, audio: bytes, *, realtime: bool = True, config: dict | None = None,
                     messages: list[bytes] | None = None) -> Outcome:
    """One StreamingRecognize call on its own channel: the configuration, the audio in
    100 ms messages (paced in real time, or all at once), half-close; collects the
    speech starts and finals and the status."""
    out = Outcome()
    options = RecognitionOptions(language="English", word_timestamps=False, interim_results=False)
    first = options.streaming_request(AudioFormat(RATE))
    for key, value in (config or {}).items():
        setattr(first.streaming_config.config, key, value)
    parts = messages if messages is not None else [audio[i:i + CHUNK_BYTES] for i in range(0, len(audio), CHUNK_BYTES)]

    async def requests():
        yield first
        t0 = time.monotonic()
        sent = 0
        for part in parts:
            if realtime:
                await asyncio.sleep(max(0.0, t0 + sent / (2 * RATE) - time.monotonic()))
            sent += len(part)
            yield asr_pb2.StreamingRecognizeRequest(audio_content=part)

    async with grpc.aio.insecure_channel(address) as channel:
        call = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests())
        try:
            async for response in call:
                now = time.monotonic()
                event = response.speech_event
                if response.HasField("speech_event") and event.type == asr_pb2.SpeechEvent.SPEECH_START:
                    out.items.append((now, "start", event.utterance_index, event.offset_ms, 0))
                for r in response.results:
                    if r.is_final:
                        out.items.append((now, "final", r.utterance_index, r.result_start_offset_ms,
                                          r.result_end_offset_ms))
        except grpc.aio.AioRpcError:
            pass
        out.code, out.details = await call.code(), await call.details()
    return out


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def survived_drain(outcome: Outcome, proxy_name: str) -> bool:
    """A stream of the draining replica: UNAVAILABLE with our message. Through HAProxy 2.6 the
    status may instead arrive as CANCELLED (its h2 mux resets a stream whose response ended
    before the request did, haproxy/haproxy#1219); the finals arrive all the same."""
    if outcome.code == grpc.StatusCode.UNAVAILABLE and outcome.details == SHUTDOWN_MESSAGE:
        return True
    return proxy_name == "haproxy" and haproxy_reset(outcome)


def haproxy_reset(outcome: Outcome) -> bool:
    """HAProxy 2.6's h2 mux resetting a stream whose response ended before its request
    (haproxy/haproxy#1219): grpc-core reports the reset as CANCELLED ("Received RST_STREAM
    with error code 8") or, for another reset code, INTERNAL ("Internal error from Core")."""
    return ((outcome.code == grpc.StatusCode.CANCELLED and "RST_STREAM" in outcome.details)
            or (outcome.code == grpc.StatusCode.INTERNAL and outcome.details == "Internal error from Core"))


# --------------------------------------------------------------------------- tests


def test_drain_moves_new_streams_to_the_other_replicas(proxy, fleet, speech, phrase):
    name = proxy.exe

    async def scenario():
        ok_before = [r.metric("asr_streams_total", code="OK") for r in fleet]
        first = []
        for _ in range(9):  # one at a time, so that least-connections sees each
            first.append(asyncio.create_task(run_stream(proxy.address, speech)))
            await wait_until_async(lambda: sum(r.metric("asr_active_streams") for r in fleet) == len(first),
                                   timeout=30, interval=0.05, what=f"stream {len(first)} on a replica")
        assert [r.metric("asr_active_streams") for r in fleet] == [3, 3, 3]

        victim = fleet[0]
        await asyncio.sleep(0.5)  # the latest streams are in their first utterance
        sigterm_at = time.monotonic()
        victim.terminate()
        await wait_until_async(lambda: victim.probe("/readyz") == 503, timeout=10, interval=0.05,
                               what="the replica draining")
        probes = victim.probe("/readyz"), victim.probe("/livez"), refuses(victim.port)
        second = [asyncio.create_task(run_stream(proxy.address, pcm(0.3) + phrase + pcm(0.8))) for _ in range(6)]
        exit_code = await asyncio.get_running_loop().run_in_executor(None, victim.wait, GRACE_S + 5)
        exit_s = time.monotonic() - sigterm_at
        return ok_before, sigterm_at, probes, exit_code, exit_s, await asyncio.gather(*first), await asyncio.gather(*second)

    ok_before, sigterm_at, probes, exit_code, exit_s, first, second = asyncio.run(scenario())

    assert probes == (503, 200, True), "draining: not ready, still alive, the listener closed"
    assert exit_code == 0 and exit_s <= GRACE_S, (exit_code, exit_s)
    drained = [o for o in first if o.code != grpc.StatusCode.OK]
    assert len(drained) == 3, [(o.code, o.details) for o in first]
    for o in drained:
        assert survived_drain(o, name), (o.code, o.details)
        assert o.started and o.started == {f[2] for f in o.finals}, "a final for every utterance begun"
    assert any(start < sigterm_at < final for o in drained for (start, kind, u, *_) in o.items if kind == "start"
               for (final, k2, u2, *_) in o.items if k2 == "final" and u2 == u), "no utterance was in progress"
    for o in [o for o in first if o.code == grpc.StatusCode.OK]:
        assert [f[2] for f in o.finals] == [0, 1, 2]
    for o in second:
        assert o.code == grpc.StatusCode.OK and len(o.finals) == 1, (o.code, o.details)
    ok_after = [r.metric("asr_streams_total", code="OK") for r in fleet[1:]]
    assert sum(ok_after) - sum(ok_before[1:]) == 6 + 6, "the 6 new streams ran on the two other replicas"


STATUS_CASES = {
    "OK": dict(audio_s=1.0),
    "INVALID_ARGUMENT": dict(config={"sample_rate_hertz": 1000}),
    "RESOURCE_EXHAUSTED": dict(messages=[pcm(0.1), bytes(2 * MAX_MESSAGE_BYTES)]),
    "OUT_OF_RANGE": dict(audio_s=MAX_STREAM_SECONDS + 1.0),
}


@pytest.mark.parametrize("expected", sorted(STATUS_CASES))
def test_statuses_pass_through_unchanged(proxy, fleet, phrase, expected):
    case = STATUS_CASES[expected]
    audio = phrase + pcm(case.get("audio_s", 0.0))

    async def both():
        kwargs = dict(realtime=False, config=case.get("config"), messages=case.get("messages"))
        return (await run_stream(fleet[1].address, audio, **kwargs),
                await run_stream(proxy.address, audio, **kwargs))

    direct, proxied = asyncio.run(both())
    assert direct.code == grpc.StatusCode[expected], (direct.code, direct.details)
    assert (proxied.code, proxied.details) == (direct.code, direct.details)
    assert [f[2:] for f in proxied.finals] == [f[2:] for f in direct.finals]


def test_resumable_stream_survives_a_killed_replica(proxy, fleet, phrase):
    """SIGKILL the replica of a stream in its second utterance: the stream reconnects through
    the proxy, replays the unacknowledged audio and goes on; every utterance gets exactly one
    final, at the offsets it has in the recording."""
    from qwen3_asr_client import AsyncStreamingClient
    from qwen3_asr_client.resilience import ResumableStream

    lead, gap, n = 0.5, 1.0, 4
    audio = pcm(lead) + (phrase + pcm(gap)) * n
    phrase_s = len(phrase) / (2 * RATE)
    starts_ms = [round(1000 * (lead + i * (phrase_s + gap))) for i in range(n)]

    async def source():
        t0 = time.monotonic()
        for i in range(0, len(audio), CHUNK_BYTES):
            await asyncio.sleep(max(0.0, t0 + i / (2 * RATE) - time.monotonic()))
            yield audio[i:i + CHUNK_BYTES]

    async def scenario():
        items, killed = [], None
        options = RecognitionOptions(language="English", word_timestamps=False)
        async with AsyncStreamingClient(proxy.address) as client:
            stream = ResumableStream(client, AudioFormat(RATE), options)
            async for item in stream.run(source()):
                items.append(item)
                if killed is None and getattr(item, "type", "") == "start" and item.utterance_index == 1:
                    [killed] = [r for r in fleet if r.metric("asr_active_streams") == 1]
                    await asyncio.sleep(0.4)  # well inside the second utterance
                    killed.kill()
        return stream, items, killed

    stream, items, killed = asyncio.run(scenario())
    assert killed is not None and killed.wait(5) == -9
    finals = [i for i in items if getattr(i, "is_final", False)]
    assert [f.utterance_index for f in finals] == list(range(n)), "one final per utterance, none twice, none lost"
    assert stream.resumes == 1 and stream.lost_ms == 0
    for final, start_ms in zip(finals, starts_ms):
        assert abs(final.start_ms - start_ms) < 400, ([(f.start_ms, f.end_ms) for f in finals], starts_ms)
        assert final.end_ms > final.start_ms


def test_a_status_sent_while_the_client_still_sends(proxy, fleet, phrase):
    """RESOURCE_EXHAUSTED for an oversize message while the client goes on sending for 2 s more:
    nginx passes it unchanged; HAProxy 2.6 may turn it into CANCELLED (haproxy/haproxy#1219),
    which the documentation and the resumable client account for."""
    messages = [phrase[:CHUNK_BYTES], bytes(2 * MAX_MESSAGE_BYTES)] + [pcm(0.1)] * 20

    async def both():
        return (await run_stream(fleet[1].address, b"", messages=messages),
                await run_stream(proxy.address, b"", messages=messages))

    direct, proxied = asyncio.run(both())
    assert direct.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    if proxy.exe == "nginx":
        assert (proxied.code, proxied.details) == (direct.code, direct.details)
    else:
        assert (proxied.code, proxied.details) == (direct.code, direct.details) or haproxy_reset(proxied)


def test_a_replica_restarts_on_its_port_right_after_a_drain(fleet):
    """Its old connections are in TIME_WAIT for a minute; a supervisor restarting it there
    at once must not get 'address in use' (the same port is what the proxies list)."""
    replica = running(fleet)[2]
    asyncio.run(run_stream(replica.address, pcm(0.5), realtime=False))  # a connection the server closes
    replica.terminate()
    assert replica.wait(GRACE_S + 5) == 0
    replica.start().wait_ready()
    assert replica.starts >= 2
