"""Early end of turn: Deepgram Flux-style TurnInfo events on /v2/listen, from the session core's
pause / resume events (audio/vad.py eager_pause_ms) and an interim decoded at the pause."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest

from conftest import deepgram_drive, deepgram_python, free_port, write_wav

pytest.importorskip("webrtcvad")

from qwen3_asr_stream.audio.vad import EndpointingOptions, Segmenter, SpeechPaused, SpeechResumed  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402

KEY = "flux-key"
PAUSE_S = 0.9  # inside the sentence: longer than the eager pause (240 ms) and its decode on a loaded machine
END_MS = 1500  # shorter than this is inside the turn (eot_timeout_ms)


def with_pause(phrases) -> tuple[np.ndarray, int]:
    a, b, rate = trimmed(phrases[0]), trimmed(phrases[1]), phrases[2]
    z = lambda s: np.zeros(int(s * rate), np.int16)  # noqa: E731
    return np.concatenate([z(0.5), a, z(PAUSE_S), b, z(2.5)]), rate


def trimmed(phrase: np.ndarray) -> np.ndarray:
    """The phrase without the synthesizer's silence around it (the pause is then PAUSE_S)."""
    audible = np.nonzero(np.abs(phrase.astype(np.int32)) > 300)[0]
    return phrase[audible[0]:audible[-1] + 1]


@pytest.fixture(scope="module")
def server(engine, aligner):
    options = ServerOptions(port=0, http_port=free_port(), auth_token=KEY)
    with ServerThread(options, {"tiny": engine}, aligner) as server:
        yield server


def test_segmenter_pauses_and_resumes_inside_an_utterance(phrases):
    pcm, rate = with_pause(phrases)
    import soxr
    audio = soxr.resample(pcm.astype(np.float32) / 32768, rate, 16000).astype(np.float32)
    events = Segmenter(EndpointingOptions(stop_window_ms=END_MS, eager_pause_ms=240)).push(audio)
    kinds = [type(e).__name__ for e in events if not type(e).__name__ == "SpeechAudio"]
    first = kinds.index("SpeechPaused")
    assert kinds[0] == "SpeechStarted" and kinds[first + 1] == "SpeechResumed", kinds
    assert kinds.count("SpeechStarted") == 1 and kinds[-1] == "SpeechEnded", kinds  # one utterance
    pause = next(e for e in events if isinstance(e, SpeechPaused))
    resume = next(e for e in events if isinstance(e, SpeechResumed))
    assert 0 < resume.offset_ms - pause.offset_ms < PAUSE_S * 1000 + 100
    assert Segmenter(EndpointingOptions()).push(audio) and not [
        e for e in Segmenter(EndpointingOptions()).push(audio) if isinstance(e, (SpeechPaused, SpeechResumed))]


async def flux(server, pcm: bytes, rate: int, query: str) -> list[dict]:
    base = f"http://127.0.0.1:{server.server.http_port}"
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Token {KEY}"}) as session:
        async with session.ws_connect(f"/v2/listen?model=flux-general-en&encoding=linear16&sample_rate={rate}"
                                      f"{query}") as ws:
            async def feed():
                step = rate // 50 * 2
                for i in range(0, len(pcm), step):
                    await ws.send_bytes(pcm[i:i + step])
                    await asyncio.sleep(0.02)  # real time
                await ws.send_str(json.dumps({"type": "CloseStream"}))

            feeder = asyncio.create_task(feed())
            out = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
            await feeder
            assert ws.close_code == 1000, out
            return out


def test_eager_end_of_turn_then_resumed_then_the_final(server, phrases):
    pcm, rate = with_pause(phrases)
    query = f"&eager_eot_threshold=0.5&eot_timeout_ms={END_MS}"
    out = asyncio.run(flux(server, pcm.astype("<i2").tobytes(), rate, query))
    assert out[0]["type"] == "Connected"
    events = [m["event"] for m in out if m["type"] == "TurnInfo"]
    assert events[0] == "StartOfTurn" and events[-1] == "EndOfTurn", events
    eager = events.index("EagerEndOfTurn")
    assert events.index("TurnResumed") > eager, events
    assert {m["turn_index"] for m in out if m["type"] == "TurnInfo"} == {0}  # one turn
    first_eager = next(m for m in out if m.get("event") == "EagerEndOfTurn")
    end = out[-1]
    assert first_eager["transcript"] and end["transcript"], out
    assert first_eager["audio_window_end"] < end["audio_window_end"]
    assert [m["sequence_id"] for m in out] == list(range(len(out)))


def test_no_eager_events_without_the_option(server, phrases):
    pcm, rate = with_pause(phrases)
    out = asyncio.run(flux(server, pcm.astype("<i2").tobytes(), rate, f"&eot_timeout_ms={END_MS}"))
    events = [m["event"] for m in out if m["type"] == "TurnInfo"]
    assert "EagerEndOfTurn" not in events and "TurnResumed" not in events and events[-1] == "EndOfTurn", events


def test_the_sdk_flux_client(server, phrases, tmp_path):
    pcm, rate = with_pause(phrases)
    wav = write_wav(tmp_path / "turn.wav", pcm, rate)
    out = deepgram_drive(deepgram_python(), f"http://127.0.0.1:{server.server.http_port}", wav, "sdk-flux", KEY,
                         query={"eager_eot_threshold": "0.5", "eot_timeout_ms": str(END_MS)})
    assert not [o for o in out if o["kind"] in ("exception", "error")], out
    events = [o["data"]["event"] for o in out if o["kind"] == "message" and o["data"]["type"] == "TurnInfo"]
    assert events[0] == "StartOfTurn" and events[-1] == "EndOfTurn", events
    assert events.index("TurnResumed") > events.index("EagerEndOfTurn"), events


def test_realtime_extension_eager_end_of_turn(server, phrases):
    """The OpenAI Realtime WebSocket with ``turn_detection.eager_pause_ms`` (our extension)."""
    import base64

    pcm, rate = with_pause(phrases)
    data = pcm.astype("<i2").tobytes()
    session = {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}, "transcription": {"model": "gpt-4o-transcribe"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": END_MS, "eager_pause_ms": 240}}}}

    async def run() -> list[dict]:
        base = f"http://127.0.0.1:{server.server.http_port}"
        async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {KEY}"}) as http:
            async with http.ws_connect("/v1/realtime?intent=transcription") as ws:
                await ws.send_json({"type": "session.update", "session": session})
                out = []

                async def feed():
                    step = rate // 50 * 2
                    for i in range(0, len(data), step):
                        await ws.send_json({"type": "input_audio_buffer.append",
                                            "audio": base64.b64encode(data[i:i + step]).decode()})
                        await asyncio.sleep(0.02)

                feeder = asyncio.create_task(feed())
                async for message in ws:
                    event = json.loads(message.data)
                    out.append(event)
                    if event["type"] == "conversation.item.input_audio_transcription.completed":
                        break
                await feeder
                return out

    out = asyncio.run(run())
    kinds = [e["type"] for e in out]
    updated = next(e for e in out if e["type"] == "session.updated")
    assert updated["session"]["audio"]["input"]["turn_detection"]["eager_pause_ms"] == 240
    eager = kinds.index("input_audio_buffer.eager_end_of_turn")
    assert kinds.index("input_audio_buffer.speech_resumed") > eager, kinds
    assert out[eager]["transcript"] and kinds[-1] == "conversation.item.input_audio_transcription.completed"
    assert len({e["item_id"] for e in out if "item_id" in e}) == 1  # one item: the pause did not end it


def test_asr_v1_eager_end_of_turn_through_the_python_client(server, phrases):
    """asr.v1: ``EndpointingConfig.eager_pause_ms`` (client ``RecognitionOptions.eager_pause_ms``)
    gives SpeechEvent EAGER_END_OF_TURN with the transcript so far, TURN_RESUMED, then one final."""
    from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions, Result, SpeechEvent
    from qwen3_asr_client.proto.asr.v1 import asr_pb2

    pcm, rate = with_pause(phrases)
    data = pcm.astype("<i2").tobytes()
    step = rate // 10 * 2
    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    endpointing = asr_pb2.EndpointingConfig(stop_history_ms=END_MS)

    async def run(eager_ms: int) -> list:
        options = RecognitionOptions(interim_results=False, word_timestamps=False, endpointing=endpointing,
                                     eager_pause_ms=eager_ms)
        async with AsyncStreamingClient(server.address, token=KEY) as client:
            return [i async for i in client.stream(chunks, AudioFormat(rate), options, realtime=True)]

    items = asyncio.run(run(240))
    kinds = [i.type if isinstance(i, SpeechEvent) else ("final" if i.is_final else "interim") for i in items]
    assert "interim" not in kinds, kinds  # the eager transcript is an event, not an interim result
    eager = kinds.index("eager_end_of_turn")
    assert kinds.index("start") < eager < kinds.index("resumed") < kinds.index("end"), kinds
    assert kinds.index("resumed") < kinds.index("final"), kinds
    # The pause did not end the utterance (the real end may send another eager event first).
    assert kinds.count("start") == 1 and kinds.count("final") == 1, kinds
    event, final = items[eager], next(i for i in items if isinstance(i, Result))
    assert event.transcript and event.utterance_index == final.utterance_index == 0
    assert event.offset_ms < final.end_ms
    # Off by default; a pause as long as the end of an utterance is refused with the rule.
    assert "eager_end_of_turn" not in [i.type for i in asyncio.run(run(0)) if isinstance(i, SpeechEvent)]
    from grpc import StatusCode
    from grpc.aio import AioRpcError
    with pytest.raises(AioRpcError) as refused:
        asyncio.run(run(END_MS))
    assert refused.value.code() == StatusCode.INVALID_ARGUMENT and "eager_pause_ms" in refused.value.details()
