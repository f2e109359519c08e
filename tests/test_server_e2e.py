"""End to end through a real gRPC server on loopback: tiny random checkpoints, espeak-ng speech.

The tiny model's text is random, so these tests check the service's contract
(events, order, offsets, finals, words, statuses), not the words recognized.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request

import grpc
import pytest

from conftest import (BOUNDARY_TOLERANCE_MS, Speech, call_status, call_status_sync, collect, compose, finals,
                      free_port, self_signed, wait_until_async)
from qwen3_asr_client import FINALIZE, AsyncStreamingClient, RecognitionOptions, Result, SpeechEvent
from qwen3_asr_client.proto import asr_pb2

pytest.importorskip("webrtcvad")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402

from qwen3_asr_stream.server.app import SERVICE_NAME  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402


@pytest.fixture(scope="module")
def speech(phrases) -> Speech:
    a, b, rate = phrases
    return compose([a, b], rate)


@pytest.fixture(scope="module")
def server(engine, aligner):
    with ServerThread(ServerOptions(port=0, metrics_port=free_port()), {"tiny": engine}, aligner) as server:
        yield server


def stream(address, chunks, fmt, options=RecognitionOptions(interim_results=False), **kw) -> list:
    return asyncio.run(collect(address, chunks, fmt, options, **kw))


def events(items) -> list[SpeechEvent]:
    return [i for i in items if isinstance(i, SpeechEvent)]


def check_words(result: Result) -> None:
    """Words inside the result, in order; the result and every word with a confidence in [0, 1]."""
    assert result.words, "the aligner gave no words"
    assert result.confidence is not None and 0 <= result.confidence <= 1, result.confidence
    for word in result.words:
        assert result.start_ms <= word.start_ms <= word.end_ms <= result.end_ms, (word, result.start_ms, result.end_ms)
        assert word.confidence is not None and 0 <= word.confidence <= 1, word
    starts = [w.start_ms for w in result.words]
    assert starts == sorted(starts)


def test_events_results_order_offsets_and_words(server, speech):
    items = stream(server.address, speech.chunks(40), speech.format)
    kinds = [(type(i).__name__, i.utterance_index, getattr(i, "type", None)) for i in items]
    assert kinds == [("SpeechEvent", 0, "start"), ("SpeechEvent", 0, "end"), ("Result", 0, None),
                     ("SpeechEvent", 1, "start"), ("SpeechEvent", 1, "end"), ("Result", 1, None)]
    for (first, last), start, end in zip(speech.spans, events(items)[::2], events(items)[1::2]):
        assert abs(start.offset_ms - first) <= BOUNDARY_TOLERANCE_MS, (start, first)
        assert abs(end.offset_ms - last) <= BOUNDARY_TOLERANCE_MS, (end, last)
        assert end.end_reason == "silence"
    one, two = finals(items)
    assert [one.utterance_index, one.end_reason, two.utterance_index, two.end_reason] == [0, "silence", 1, "silence"]
    assert one.start_ms <= speech.spans[0][0] and one.end_ms >= speech.spans[0][1]
    assert two.start_ms > one.end_ms and two.start_ms <= speech.spans[1][0]  # offsets from the stream start
    assert one.stability == 1.0 and one.stable_text == one.transcript and one.unstable_text == ""
    assert two.audio_processed_ms >= two.end_ms
    for result in (one, two):
        check_words(result)


def test_half_close_flushes_the_last_utterance(server, phrases):
    a, _, rate = phrases
    speech = compose([a], rate, tail_s=0.0)  # the stream ends inside the speech's tail
    items = stream(server.address, speech.chunks(100), speech.format)
    assert [e.type for e in events(items)] == ["start", "end"]
    (final,) = finals(items)
    assert final.end_reason == "end_of_stream" and events(items)[1].end_reason == "end_of_stream"
    assert final.end_ms == len(speech.pcm) * 1000 // rate
    check_words(final)


def test_finalize_forces_a_final_mid_speech(server, speech):
    cut = len(speech.chunks(50)) // 4  # inside the first phrase
    chunks = speech.chunks(50)
    items = stream(server.address, [*chunks[:cut], FINALIZE, *chunks[cut:]], speech.format)
    results = finals(items)
    assert results[0].end_reason == "forced" and results[0].utterance_index == 0
    assert results[0].end_ms <= cut * 50 + 100 < speech.spans[0][1]
    assert [r.utterance_index for r in results] == list(range(len(results)))  # each final exactly once, in order
    assert len(results) >= 3 and results[-1].end_reason == "silence"


def test_interim_results_only_when_asked(server, phrases):
    a, _, rate = phrases
    speech = compose([a], rate)
    on = RecognitionOptions(interim_results=True, update_interval_ms=300, word_timestamps=False)
    off = RecognitionOptions(interim_results=False, update_interval_ms=300, word_timestamps=False)

    async def paced(options):  # about 4x real time, so that interim updates have time to run
        async def chunks():
            for chunk in speech.chunks(100):
                yield chunk
                await asyncio.sleep(0.025)
        return await collect(server.address, chunks(), speech.format, options)

    with_interims = asyncio.run(paced(on))
    interims = [i for i in with_interims if isinstance(i, Result) and not i.is_final]
    assert interims, "no interim result although interim_results was set"
    (final,) = finals(with_interims)
    assert with_interims.index(final) > max(with_interims.index(i) for i in interims)
    for interim in interims:
        assert interim.utterance_index == 0 and interim.end_reason == "" and not interim.words
        assert interim.start_ms == final.start_ms and interim.end_ms <= final.end_ms
        assert interim.transcript == interim.stable_text + interim.unstable_text
        # A measured confidence: each token as scored by the update that decoded it.
        assert (interim.confidence is None) == (not interim.transcript.strip())
        assert interim.confidence is None or 0 < interim.confidence <= 1
    ends = [i.end_ms for i in interims]
    assert ends == sorted(ends) and ends[-1] - ends[0] >= 300 * (len(ends) - 1) - 50  # the asked-for cadence

    without = asyncio.run(paced(off))
    assert [i for i in without if isinstance(i, Result) and not i.is_final] == []
    assert len(finals(without)) == 1 and not finals(without)[0].words


def test_recognize_whole_recording(server, speech):
    async def run():
        async with AsyncStreamingClient(server.address) as c:
            return await c.recognize(speech.pcm.tobytes(), speech.format, raw=True)

    response = asyncio.run(run())
    assert response.audio_duration_ms == len(speech.pcm) * 1000 // speech.rate
    assert [r.utterance_index for r in response.results] == [0, 1]
    assert all(r.is_final and r.end_reason == asr_pb2.SILENCE for r in response.results)
    one, two = (Result.from_proto(r) for r in response.results)
    assert one.end_ms < two.start_ms
    for result, (first, last) in zip((one, two), speech.spans):
        assert result.start_ms <= first and result.end_ms >= last
        check_words(result)


def test_get_speech_recognition_config(server):
    async def run():
        async with AsyncStreamingClient(server.address) as c:
            return await c.get_config()

    config = asyncio.run(run())
    assert [(m.name, m.is_default, m.word_time_offsets) for m in config.models] == [("tiny", True, True)]
    assert "English" in config.languages and "en" in config.languages and "English" in config.models[0].languages
    assert (config.min_sample_rate_hertz, config.max_sample_rate_hertz) == (8000, 48000)
    assert list(config.encodings) == list(range(1, 9)) and list(config.channel_counts) == list(range(1, 9))
    options = server.options
    assert config.limits.max_streams == options.max_streams
    assert config.limits.max_message_bytes == options.max_message_bytes
    assert config.limits.max_stream_seconds == options.max_stream_seconds
    assert config.limits.max_recognize_bytes == options.max_recognize_bytes
    assert config.default_endpointing.stop_history_ms == options.endpointing.stop_window_ms
    assert config.default_endpointing.HasField("pre_roll_ms")
    assert config.default_update_interval_ms == options.update_interval_ms


def test_reflection_lists_the_services(server):
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(iter(responses)).list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_metrics_endpoint(server, speech):
    stream(server.address, speech.chunks(100), speech.format)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.options.metrics_port}/metrics", timeout=10).read().decode()
    for name in ("asr_active_streams", "asr_audio_seconds_total", "asr_streams_total", "asr_rejected_streams_total",
                 "asr_final_latency_seconds_count", "asr_first_partial_latency_seconds_count",
                 "asr_engine_utterances", "asr_aligner_queue", "asr_speaker_queue_windows", "asr_results_total"):
        assert name in text, name
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['asr_streams_total{code="OK"}'] >= 1
    assert samples['asr_audio_seconds_total{rpc="stream"}'] >= len(speech.pcm) / speech.rate - 0.01
    assert samples["asr_final_latency_seconds_count"] >= 2


def test_health_then_graceful_shutdown(engine, aligner, phrases):
    """SERVING; on stop NOT_SERVING, new streams refused, the utterance in progress finishes, then the end."""
    a, _, rate = phrases
    speech = compose([a], rate, tail_s=1.0)
    server = ServerThread(ServerOptions(port=0, grace_s=20), {"tiny": engine}, aligner).start()
    try:
        channel = grpc.insecure_channel(server.address)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

        async def run():
            async with AsyncStreamingClient(server.address) as c:
                s = await c.open_stream(speech.format, RecognitionOptions(interim_results=False))
                chunks = speech.chunks(100)
                half = len(chunks) // 3
                for chunk in chunks[:half]:
                    await s.send_audio(chunk)
                items, it = [], s.__aiter__()
                while not items or not isinstance(items[-1], SpeechEvent):  # speech has started
                    items.append(await it.__anext__())
                stopper = threading.Thread(target=server.stop)
                stopper.start()
                await wait_until_async(lambda: server.server.calls.draining, what="the server draining")
                config = RecognitionOptions().streaming_request(speech.format)
                code, _, _ = await call_status(server.address, [config])  # no new streams while draining
                assert code == grpc.StatusCode.UNAVAILABLE
                for chunk in chunks[half:]:  # the rest of the utterance, then silence
                    await s.send_audio(chunk)
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    async for item in it:
                        items.append(item)
                return items, ended.value, stopper

        items, ended, stopper = asyncio.run(run())
        assert ended.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in ended.details()
        (final,) = finals(items)
        assert final.end_reason == "silence"  # it finished on its own, not cut
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        stopper.join(30)
        assert not stopper.is_alive()
        channel.close()
    finally:
        server.stop()


def test_tls_and_bearer_token(engine, tmp_path, phrases):
    a, _, rate = phrases
    speech = compose([a], rate, tail_s=0.3)
    cert, key = self_signed(tmp_path)
    options = ServerOptions(port=0, tls_cert=cert, tls_key=key, auth_token="s3cret")
    with ServerThread(options, {"tiny": engine}) as server:
        address = f"127.0.0.1:{server.port}"
        items = stream(address, speech.chunks(100), speech.format, root_certificates=cert, token="s3cret")
        assert len(finals(items)) == 1 and finals(items)[0].words == ()  # no aligner loaded: no words

        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        requests = [RecognitionOptions().streaming_request(speech.format),
                    *(asr_pb2.StreamingRecognizeRequest(audio_content=c) for c in speech.chunks(100))]
        for token in (None, "wrong"):
            metadata = (("authorization", f"Bearer {token}"),) if token else ()
            code, _, responses = call_status_sync(address, requests, metadata, credentials)
            assert code == grpc.StatusCode.UNAUTHENTICATED and responses == []

            async def unary():
                async with AsyncStreamingClient(address, root_certificates=cert, token=token) as c:
                    return await c.get_config()
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                asyncio.run(unary())
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED

        with grpc.secure_channel(address, grpc.ssl_channel_credentials(cert.read_bytes())) as channel:
            health = health_pb2_grpc.HealthStub(channel)  # probes need no token
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(address) as channel:  # plaintext to a TLS port fails
            with pytest.raises(grpc.RpcError) as plain:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert plain.value.code() == grpc.StatusCode.UNAVAILABLE


def test_second_server_cannot_share_the_port(engine, server):
    with pytest.raises(OSError, match="cannot listen"):
        ServerThread(ServerOptions(port=server.port), {"tiny": engine}).start()
