"""Deepgram's /v1/listen (live WebSocket and pre-recorded POST) with the official deepgram-sdk,
Pipecat's DeepgramSTTService, and raw requests for the bad-input list.

The SDK and Pipecat run in Pipecat's own virtualenv (.venv-pipecat with pipecat-ai[deepgram] and
deepgram-sdk pinned, see .ci/run) through tests/deepgram_driver.py, as the Riva plugin tests do.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from conftest import (BOUNDARY_TOLERANCE_MS, compose, deepgram_drive, deepgram_python, framework_python, free_port,
                      speaking_sessions, wait_until_async, write_wav)

pytest.importorskip("webrtcvad")

from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402

KEY = "dg-key"


@pytest.fixture(scope="module")
def venv_python() -> Path:
    return deepgram_python()


@pytest.fixture(scope="module")
def server(engine, aligner):
    options = ServerOptions(port=0, http_port=free_port(), auth_token=KEY)
    with ServerThread(options, {"tiny": engine}, aligner) as server:
        yield server


@pytest.fixture(scope="module")
def speech(phrases):
    a, b, rate = phrases
    return compose([a, b], rate)


@pytest.fixture(scope="module")
def wav(speech, tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("deepgram") / "speech.wav", speech.pcm, speech.rate)


def url(server) -> str:
    return f"http://127.0.0.1:{server.server.http_port}"


def drive(python: Path, server, wav: Path, mode: str, key: str = KEY, **options) -> list[dict]:
    return deepgram_drive(python, url(server), wav, mode, key, **options)


def messages(out: list[dict], kind: str) -> list[dict]:
    return [o["data"] for o in out if o["kind"] == "message" and o["data"]["type"] == kind]


def finals(out: list[dict]) -> list[dict]:
    return [r for r in messages(out, "Results") if r["is_final"]]


def test_sdk_live_stream(venv_python, server, wav, speech):
    query = {"interim_results": "true", "vad_events": "true", "utterance_end_ms": "1000", "punctuate": "true",
             "language": "en"}
    out = drive(venv_python, server, wav, "sdk-live", query=query)
    assert not [o for o in out if o["kind"] in ("exception", "error")], out
    kinds = [o["data"]["type"] for o in out if o["kind"] == "message"]
    one, two = finals(out)
    assert all(r["speech_final"] and not r["from_finalize"] for r in (one, two)), (one, two)
    assert [r for r in messages(out, "Results") if not r["is_final"]], "no interim results"
    assert kinds.count("SpeechStarted") == 2 and kinds.count("UtteranceEnd") == 2, kinds
    assert kinds[-1] == "Metadata", kinds
    for final, (first, last) in zip((one, two), speech.spans):
        alternative = final["channel"]["alternatives"][0]
        assert alternative["transcript"], final
        assert final["start"] * 1000 <= first + BOUNDARY_TOLERANCE_MS
        assert (final["start"] + final["duration"]) * 1000 >= last - BOUNDARY_TOLERANCE_MS
        words = alternative["words"]
        assert words and all(final["start"] <= w["start"] <= w["end"] <= final["start"] + final["duration"] + 1e-3
                             for w in words), final
        assert final["channel_index"] == [0, 1] and final["metadata"]["request_id"]
    started = messages(out, "SpeechStarted")
    for event, (first, _) in zip(started, speech.spans):
        assert abs(event["timestamp"] * 1000 - first) <= 400, (event, first)  # pre-roll and the start window
    for end, final in zip(messages(out, "UtteranceEnd"), (one, two)):
        assert end["last_word_end"] == final["channel"]["alternatives"][0]["words"][-1]["end"]
    metadata = messages(out, "Metadata")[0]
    assert metadata["duration"] == pytest.approx(len(speech.pcm) / speech.rate, abs=0.01)
    assert metadata["sha256"] == hashlib.sha256(speech.pcm.astype("<i2").tobytes()).hexdigest()
    assert metadata["channels"] == 1 and metadata["request_id"] == one["metadata"]["request_id"]


def test_sdk_finalize_and_prerecorded_match_the_stream(venv_python, server, wav, speech):
    first_end_s = speech.spans[0][1] / 1000
    out = drive(venv_python, server, wav, "sdk-live", finalize_at=round(first_end_s - 0.5, 2), speed=4)
    assert not [o for o in out if o["kind"] in ("exception", "error")], out
    forced = [r for r in finals(out) if r["from_finalize"]]
    assert len(forced) == 1 and not forced[0]["speech_final"], finals(out)
    assert forced[0]["start"] + forced[0]["duration"] <= first_end_s  # it ended where Finalize came

    live = drive(venv_python, server, wav, "sdk-live", speed=4)
    texts = [r["channel"]["alternatives"][0]["transcript"] for r in finals(live)]
    assert len(texts) == 2 and all(texts), live
    out = drive(venv_python, server, wav, "sdk-prerecorded")
    [response] = [o["data"] for o in out if o["kind"] == "prerecorded"]
    alternative = response["results"]["channels"][0]["alternatives"][0]
    assert alternative["transcript"] == " ".join(texts)  # the same finals as the stream
    assert alternative["words"] and response["metadata"]["duration"] == pytest.approx(
        len(speech.pcm) / speech.rate, abs=0.01)


def test_sdk_with_a_wrong_key_and_a_refused_option(venv_python, server, wav):
    out = drive(venv_python, server, wav, "sdk-live", key="wrong")
    [error] = [o for o in out if o["kind"] == "exception"]
    assert error["status"] == 401 or "401" in error["text"], error
    out = drive(venv_python, server, wav, "sdk-live", query={"diarize": "true"})  # no speaker model here
    [error] = [o for o in out if o["kind"] == "exception"]
    assert error["status"] == 400 or "400" in error["text"], error
    out = drive(venv_python, server, wav, "sdk-prerecorded", query={"redact": "pci"})
    [error] = [o for o in out if o["kind"] == "exception"]
    assert error["status"] == 400 and "redact" in error["body"], error


def test_pipecat_deepgram_stt_service(venv_python, server, wav):
    out = drive(venv_python, server, wav, "pipecat")
    assert not [o for o in out if o["kind"] == "ErrorFrame"], out
    texts = [o["text"] for o in out if o["kind"] == "TranscriptionFrame"]
    assert len(texts) == 2 and all(texts), out
    assert [o for o in out if o["kind"] == "InterimTranscriptionFrame"], out


# -- the bad-input list, raw, beside a healthy stream ------------------------------------------------

LIVE = "/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true"


async def refused(session: aiohttp.ClientSession, path: str, status: int, words: str, **kwargs) -> dict:
    async with session.get(path, **kwargs) as response:
        body = await response.json()
        assert response.status == status, body
        assert words in body["err_msg"] and body["request_id"] == response.headers["dg-request-id"], body
        assert response.headers["dg-error"], response.headers
        return body


async def handshake_refused(session: aiohttp.ClientSession, path: str, status: int, words: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
        await session.ws_connect(path)
    assert handshake.value.status == status and words in handshake.value.headers["dg-error"], handshake.value


async def healthy_stream(base: str, speech) -> list[dict]:
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Token {KEY}"}) as session:
        async with session.ws_connect(f"/v1/listen?encoding=linear16&sample_rate={speech.rate}") as ws:
            pcm = speech.pcm.astype("<i2").tobytes()
            step = speech.rate // 10 * 2

            async def feed():
                for i in range(0, len(pcm), step):
                    await ws.send_bytes(pcm[i:i + step])
                    await asyncio.sleep(0.05)
                await ws.send_str(json.dumps({"type": "CloseStream"}))

            feeder = asyncio.create_task(feed())
            out = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
            await feeder
            assert ws.close_code == 1000
            return out


def test_bad_input_beside_a_healthy_stream(server, speech):
    base = url(server)

    async def bad_inputs():
        await wait_until_async(lambda: speaking_sessions(server), what="the healthy stream in speech")
        async with aiohttp.ClientSession(base) as anonymous:
            body = await refused(anonymous, LIVE, 401, "API key")
            assert body["err_code"] == "INVALID_AUTH"
            await refused(anonymous, LIVE, 401, "API key", headers={"Authorization": "Token wrong"})
        async with aiohttp.ClientSession(base, headers={"Authorization": f"Token {KEY}"}) as session:
            await refused(session, "/v1/listen?encoding=mp3&sample_rate=16000", 400, "encoding")
            await handshake_refused(session, LIVE + "&diarize=true", 400, "diarize")  # what a WebSocket sees
            await refused(session, "/v1/listen?encoding=linear16&sample_rate=1000", 400, "sample_rate")
            await refused(session, "/v1/listen?encoding=linear16&sample_rate=16000&diarize=true", 400, "diarize")
            await refused(session, "/v1/listen?encoding=linear16&sample_rate=16000&callback=x", 400, "callback")
            await refused(session, "/v1/listen?encoding=linear16&sample_rate=16000&utterance_end_ms=10", 400,
                          "utterance_end_ms")
            await refused(session, "/v1/listen?encoding=linear16&sample_rate=16000&model=gpt-9", 400, "model")
            # A text message that is not a control message: an Error, and the stream goes on.
            async with session.ws_connect(LIVE) as ws:
                await ws.send_str("hello")
                error = json.loads((await ws.receive()).data)
                assert error["type"] == "Error" and error["variant"] == "SchemaError", error
                await ws.send_bytes(b"\0" * 3200)
                await ws.send_str(json.dumps({"type": "CloseStream"}))
                last = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT][-1]
                assert last["type"] == "Metadata" and ws.close_code == 1000
            # Configure: key terms for the next utterances, within the limits, or a ConfigureFailure.
            async with session.ws_connect(LIVE + "&keyterm=Qwen") as ws:
                await ws.send_str(json.dumps({"type": "Configure", "keyterms": ["Pipecat", " LiveKit "]}))
                ok = json.loads((await ws.receive()).data)
                assert ok["type"] == "ConfigureSuccess" and ok["keyterms"] == ["Pipecat", "LiveKit"], ok
                await ws.send_str(json.dumps({"type": "Configure", "keyterms": [f"t{i}" for i in range(101)]}))
                failure = json.loads((await ws.receive()).data)
                assert failure["type"] == "ConfigureFailure" and "the limit is 100" in failure["description"]
                assert failure["code"] == "CONFIGURE_KEYTERM_LIMIT_EXCEEDED"
                await ws.send_str(json.dumps({"type": "CloseStream"}))
                last = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT][-1]
                assert last["type"] == "Metadata" and ws.close_code == 1000
            await refused(session, LIVE + "&keyterm=" + "k" * 65, 400, "keyterm")
            # A frame over the audio limit: an Error naming the limit and close 1009.
            huge = server.server.options.max_message_bytes + 2
            async with session.ws_connect(LIVE) as ws:
                await ws.send_bytes(b"\0" * huge)
                error = json.loads((await ws.receive()).data)
                assert error["type"] == "Error" and "exceeds the limit" in error["description"], error
                assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
            # Pre-recorded: not audio, a URL, no body.
            async with session.post("/v1/listen", data=b"not audio at all") as response:
                body = await response.json()
                assert response.status == 400 and "not audio" in body["err_msg"], body
            async with session.post("/v1/listen", json={"url": "https://example.com/a.wav"}) as response:
                body = await response.json()
                assert response.status == 400 and "fetches no URLs" in body["err_msg"], body

    async def both():
        healthy, _ = await asyncio.gather(healthy_stream(base, speech), bad_inputs())
        return healthy

    out = asyncio.run(both())
    texts = [m["channel"]["alternatives"][0]["transcript"] for m in out if m["type"] == "Results" and m["is_final"]]
    assert len(texts) == 2 and all(texts), out
    assert out[-1]["type"] == "Metadata"


def test_over_capacity_and_idle(engine):
    options = ServerOptions(port=0, http_port=free_port(), max_streams=1, idle_timeout_s=1.0)
    with ServerThread(options, {"tiny": engine}) as server:
        async def run():
            async with aiohttp.ClientSession(url(server)) as session:
                async with session.ws_connect(LIVE) as ws:
                    await handshake_refused(session, LIVE, 429, "limit of 1 streams")
                    await ws.send_bytes(np.zeros(1600, "<i2").tobytes())
                    messages = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
                    assert messages[-1]["type"] == "Error" and "no audio for 1 s" in messages[-1]["description"]
                    assert ws.close_code == 1011  # Deepgram's NET-0001
                # KeepAlive keeps a stream without audio open.
                async with session.ws_connect(LIVE) as ws:
                    for _ in range(4):
                        await ws.send_str(json.dumps({"type": "KeepAlive"}))
                        await asyncio.sleep(0.5)
                    await ws.send_str(json.dumps({"type": "CloseStream"}))
                    messages = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
                    assert [m["type"] for m in messages] == ["Metadata"] and ws.close_code == 1000

        asyncio.run(run())


# -- LiveKit's Deepgram plugin ----------------------------------------------------------------------

LIVEKIT_DRIVER = Path(__file__).with_name("deepgram_livekit_driver.py")


def test_livekit_deepgram_plugin(server, wav):
    python = framework_python(".venv-livekit", "QWEN3_ASR_LIVEKIT_PYTHON",
                              "livekit-plugins-nvidia==1.8.9 livekit-plugins-deepgram==1.8.9")
    done = subprocess.run([str(python), str(LIVEKIT_DRIVER), "--url", url(server), "--wav", str(wav), "--api-key", KEY],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert not [e for e in events if e["kind"] == "exception"], events
    [prerecorded] = [e for e in events if e["kind"] == "prerecorded"]
    assert prerecorded["text"], events
    finals = [e for e in events if e["kind"] == "FINAL_TRANSCRIPT"]
    assert len(finals) >= 2 and all(e["text"] for e in finals), events  # endpointing 25 ms may split phrases
    assert [e for e in events if e["kind"] == "END_OF_SPEECH"], events


@pytest.mark.parametrize("fmt,query", [("mulaw", "encoding=mulaw&sample_rate=8000"), ("ogg_opus", "encoding=opus"),
                                       ("wav", "")])
def test_live_codecs(server, speech, fmt, query):
    """The audio layer's codecs on /v1/listen: G.711 at 8 kHz, Ogg Opus, and a WAV with no encoding."""
    pytest.importorskip("av")
    import soxr

    from qwen3_asr_stream.testing.codecs import encode

    rate = 8000 if fmt == "mulaw" else speech.rate
    pcm = speech.pcm if rate == speech.rate else (
        soxr.resample(speech.pcm.astype(np.float32) / 32768, speech.rate, rate) * 32767).astype(np.int16)
    data = encode(pcm, rate, fmt)

    async def run():
        async with aiohttp.ClientSession(url(server), headers={"Authorization": f"Token {KEY}"}) as session:
            async with session.ws_connect(f"/v1/listen?{query}") as ws:
                for i in range(0, len(data), 2000):
                    await ws.send_bytes(data[i:i + 2000])
                    await asyncio.sleep(0.01)
                await ws.send_str(json.dumps({"type": "CloseStream"}))
                return [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]

    out = asyncio.run(run())
    texts = [m["channel"]["alternatives"][0]["transcript"] for m in out if m["type"] == "Results" and m["is_final"]]
    assert len(texts) == 2 and all(texts), out
    assert out[-1]["type"] == "Metadata" and out[-1]["duration"] == pytest.approx(len(pcm) / rate, abs=0.05)
