"""The OpenAI surfaces end to end: the official ``openai`` SDK, unchanged, against our HTTP server.

A real server (gRPC + HTTP on one loop) with the tiny random checkpoints and espeak-ng
speech; the tiny model's text is random, so these check the contract: events, their
order and item ids, offsets, formats, statuses, and that the WebSocket and gRPC paths
give the same finals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import wave

import aiohttp
import grpc
import numpy as np
import pytest
import soxr

from conftest import free_port, ga_session, speaking_sessions, synthesize, wait_until_async
from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions, Result

pytest.importorskip("webrtcvad")
import openai  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.protocols.openai_realtime import APPEND_FRAME_BYTES, MAX_APPEND_BYTES  # noqa: E402

TOKEN = "test-token"
GAP_S, LEAD_S = 1.2, 0.5
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
STARTED, STOPPED, COMMITTED = ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                               "input_audio_buffer.committed")

# The SDK's own union serializer warns about a transcription session.update; not ours.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768, w.getframerate()


@pytest.fixture(scope="module")
def phrases(espeak, tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    out = []
    for i, text in enumerate(["the quick brown fox jumps over the lazy dog", "hello world this is a test"]):
        audio, rate = read_wav(synthesize(espeak, text, folder / f"{i}.wav"))
        out.append((audio, rate))
    return out


def speech_at(phrases, rate: int) -> tuple[bytes, list[int]]:
    """The phrases with silence between them as 16-bit PCM at ``rate``; and each phrase's start in ms."""
    parts, starts, at = [np.zeros(int(LEAD_S * rate), np.float32)], [], LEAD_S
    for audio, source_rate in phrases:
        audio = soxr.resample(audio, source_rate, rate).astype(np.float32) if source_rate != rate else audio
        starts.append(round(1000 * at))
        parts += [audio, np.zeros(int(GAP_S * rate), np.float32)]
        at += len(audio) / rate + GAP_S
    return (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes(), starts


def pieces(data: bytes, rate: int, seed: int = 0) -> list[bytes]:
    """20-100 ms pieces of random length (whole samples)."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(data):
        n = int(rng.integers(20, 101)) * rate // 1000 * 2
        out.append(data[i:i + n])
        i += n
    return out


@pytest.fixture(scope="module")
def server(engine, aligner):
    options = ServerOptions(port=0, http_port=free_port(), auth_token=TOKEN)
    with ServerThread(options, {"tiny": engine}, aligner) as server:
        yield server


def base_url(server) -> str:
    return f"http://127.0.0.1:{server.server.http_port}/v1"


def sdk(server, key: str = TOKEN) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0)


async def realtime_events(server, rate: int, data: bytes, n_finals: int, *, session: dict | None = None,
                          commit_after: list[int] | None = None, seed: int = 0) -> list[dict]:
    """Stream ``data`` in 20-100 ms pieces through the SDK's realtime client; events until ``n_finals``."""
    events = []
    async with (sdk(server) as client,
                client.realtime.connect(extra_query={"intent": "transcription"}) as conn):
        await conn.session.update(session=session or ga_session(rate))
        chunks = pieces(data, rate, seed)

        async def send():
            for i, chunk in enumerate(chunks):
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                if commit_after and i in commit_after:
                    await conn.input_audio_buffer.commit()
                await asyncio.sleep(0.002)

        sender = asyncio.create_task(send())
        while sum(e["type"] == COMPLETED for e in events) < n_finals:
            event = (await asyncio.wait_for(conn.recv(), 60)).to_dict()
            assert event["type"] != "error", event
            events.append(event)
        await sender
    return events


def by_item(events: list[dict]) -> dict[str, list[dict]]:
    items: dict[str, list[dict]] = {}
    for e in events:
        if "item_id" in e:
            items.setdefault(e["item_id"], []).append(e)
    return items


def check_phrase_order(events: list[dict], starts: list[int], *, vad: bool = True) -> list[dict]:
    """Each phrase is one item: speech_started < speech_stopped < committed, deltas, completed last."""
    assert events[0]["type"] == "session.created" and events[1]["type"] == "session.updated"
    items = by_item(events)
    assert len(items) == len(starts)
    finals, previous = [], None
    for (item_id, evs), start in zip(items.items(), starts):
        types = [e["type"] for e in evs]
        if vad:
            assert types[0] == STARTED and abs(evs[0]["audio_start_ms"] - start) < 400, (types, evs[0], start)
            assert types.index(STARTED) < types.index(STOPPED) < types.index(COMMITTED)
        else:
            assert STARTED not in types and STOPPED not in types
        assert types[-1] == COMPLETED and types.count(COMPLETED) == 1
        assert DELTA in types
        committed = evs[types.index(COMMITTED)]
        assert committed["previous_item_id"] == previous
        previous = item_id
        # A client concatenating deltas spells the final unless the final says it revised them.
        completed = evs[-1]
        spelled = "".join(e["delta"] for e in evs if e["type"] == DELTA)
        assert completed["revised"] == (spelled != completed["transcript"])
        finals.append(completed)
    return finals


# -- REST ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wav_file(phrases, tmp_path_factory):
    data, starts = speech_at(phrases, 16000)
    path = tmp_path_factory.mktemp("rest") / "two.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(data)
    return path, starts


def test_rest_formats_with_the_sdk(server, wav_file):
    path, starts = wav_file

    async def main():
        async with sdk(server) as client:
            plain = await client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
            text = await client.audio.transcriptions.create(model="tiny", file=path.open("rb"), response_format="text")
            verbose = await client.audio.transcriptions.create(
                model="whisper-1", file=path.open("rb"), response_format="verbose_json",
                timestamp_granularities=["word", "segment"])
            srt = await client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="srt")
            vtt = await client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="vtt")
            models = await client.models.list()
            return plain, text, verbose, srt, vtt, models

    plain, text, verbose, srt, vtt, models = asyncio.run(main())
    assert [m.id for m in models.data] == ["tiny"]
    assert len(verbose.segments) == 2
    for segment, start in zip(verbose.segments, starts):
        assert abs(segment.start * 1000 - start) < 400 and segment.end > segment.start
    assert verbose.text == plain.text == " ".join(s.text for s in verbose.segments)
    assert text.strip() == plain.text
    assert verbose.duration == pytest.approx(len(wave.open(str(path)).readframes(10 ** 9)) / 32000, abs=0.01)
    assert verbose.words and all(w.start <= w.end for w in verbose.words)
    # avg_logprob is measured (the mean log-probability of the segment's tokens), never a constant.
    assert all(s.avg_logprob < 0 and s.tokens for s in verbose.segments)
    assert len({s.avg_logprob for s in verbose.segments}) == 2
    assert all(0 < w.model_extra["confidence"] <= 1 for w in verbose.words)
    assert [w.start for w in verbose.words] == sorted(w.start for w in verbose.words)
    assert srt.startswith("1\n00:00:00,") and "\n\n2\n00:00:0" in srt and verbose.segments[1].text in srt
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and verbose.segments[0].text in vtt


def test_rest_stream_with_the_sdk(server, wav_file):
    path, _ = wav_file

    async def main():
        async with sdk(server) as client:
            plain = await client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
            stream = await client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), stream=True)
            return plain, [event async for event in stream]

    plain, events = asyncio.run(main())
    types = [e.type for e in events]
    assert types == ["transcript.text.delta"] * (len(types) - 1) + ["transcript.text.done"] and len(types) == 3
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == plain.text


def test_rest_bad_input(server, wav_file, tmp_path):
    path, _ = wav_file
    url = base_url(server) + "/audio/transcriptions"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + bytes(server.options.max_recognize_bytes + 10))

    async def post(form=None, *, data=None, auth=headers, content_type=None):
        async with aiohttp.ClientSession() as http:
            if form is not None:
                data = aiohttp.FormData()
                for name, value in form.items():
                    if isinstance(value, bytes):
                        data.add_field(name, value, filename="a.wav")
                    else:
                        data.add_field(name, value)
            async with http.post(url, data=data, headers={**auth, **({"Content-Type": content_type}
                                                                      if content_type else {})}) as r:
                return r.status, await r.json()

    async def main():
        good = {"file": path.read_bytes(), "model": "whisper-1"}
        return [
            await post(data=b"{not json", content_type="application/json"),
            await post({"model": "whisper-1"}),
            await post({"file": b"this is not audio", "model": "whisper-1"}),
            await post({"file": big.read_bytes(), "model": "whisper-1"}),
            await post({**good, "response_format": "mp3"}),
            await post({**good, "model": "no-such-model"}),
            await post({**good, "language": "Klingon"}),
            await post({**good, "timestamp_granularities[]": "word"}),
            await post(good, auth={"Authorization": "Bearer wrong"}),
            await post(good, auth={}),
        ]

    results = asyncio.run(main())
    assert [status for status, _ in results] == [400, 400, 400, 413, 400, 400, 400, 400, 401, 401]
    for _, body in results:
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    assert results[3][1]["error"]["code"] == "payload_too_large"
    assert results[8][1]["error"]["code"] == "invalid_api_key"

    # The official SDK raises its own typed errors for these statuses.
    async def sdk_errors():
        async with sdk(server, "wrong") as wrong, sdk(server) as client:
            with pytest.raises(openai.AuthenticationError):
                await wrong.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
            with pytest.raises(openai.BadRequestError):
                await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"nope"))

    asyncio.run(sdk_errors())


def test_rest_logprobs_include(server, wav_file):
    """include[]=logprobs: OpenAI's token list on json (and on the streamed events); its mean per
    utterance is verbose_json's avg_logprob."""
    path, _ = wav_file

    async def main():
        async with sdk(server) as client:
            plain = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path.open("rb"),
                                                             include=["logprobs"])
            verbose = await client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"),
                                                               response_format="verbose_json")
            stream = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path.open("rb"),
                                                              include=["logprobs"], stream=True)
            events = [event async for event in stream]
            async with aiohttp.ClientSession() as http:
                form = aiohttp.FormData()
                form.add_field("file", path.read_bytes(), filename="a.wav")
                form.add_field("response_format", "srt")
                form.add_field("include[]", "logprobs")
                async with http.post(base_url(server) + "/audio/transcriptions", data=form,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    refused = response.status, await response.json()
            return plain, verbose, events, refused

    plain, verbose, events, refused = asyncio.run(main())
    tokens = plain.logprobs
    assert tokens and all(t.logprob <= 0 for t in tokens)
    assert all(bytes(map(int, t.bytes)).decode("utf-8", "replace") == t.token for t in tokens)
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    for delta in deltas:  # each utterance's tokens spell its text
        spelled = bytes(int(b) for t in delta.logprobs for b in t.bytes).decode("utf-8", "replace")
        assert spelled.strip() == delta.delta.strip()
    assert [len(e.logprobs) for e in deltas] and sum(len(e.logprobs) for e in deltas) == len(tokens)
    # Two recognitions of the file: equal up to float rounding (a batch with another stream's rows rounds differently).
    assert [t.token for t in events[-1].logprobs] == [t.token for t in tokens]
    assert [t.logprob for t in events[-1].logprobs] == pytest.approx([t.logprob for t in tokens], abs=1e-4)
    assert len(verbose.segments) == len(deltas)
    for segment, delta in zip(verbose.segments, deltas):
        mean = sum(t.logprob for t in delta.logprobs) / len(delta.logprobs)
        assert segment.avg_logprob == pytest.approx(mean)
        assert segment.tokens and len(segment.tokens) == len(delta.logprobs)
    assert refused[0] == 400 and "response_format=json" in refused[1]["error"]["message"]


def test_realtime_logprobs_include(server, phrases):
    data, starts = speech_at(phrases, 24000)
    session = ga_session(24000)
    session["include"] = ["item.input_audio_transcription.words", "item.input_audio_transcription.logprobs"]
    events = asyncio.run(realtime_events(server, 24000, data, len(starts), session=session, seed=3))
    finals = [e for e in events if e["type"] == COMPLETED]
    spoken = [f for f in finals if f["transcript"].strip()]
    assert spoken
    for final in spoken:
        assert final["logprobs"] and all(t["logprob"] <= 0 for t in final["logprobs"])
        mean = sum(t["logprob"] for t in final["logprobs"]) / len(final["logprobs"])
        assert final["confidence"] == pytest.approx(np.exp(mean))
        assert final["words"] and all(0 < w["confidence"] <= 1 for w in final["words"])
    # Deltas: the tokens each one completes (each token once per item) and the hypothesis' confidence.
    deltas = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert any(d["delta"] for d in deltas)
    for d in deltas:
        assert ("confidence" in d) == bool(d["text"].strip())
        assert ("logprobs" in d) == bool(d["delta"])
        assert all(t["logprob"] <= 0 for t in d.get("logprobs", ()))
    for final in finals:
        if final["revised"]:
            continue
        mine = [d for d in deltas if d["item_id"] == final["item_id"]]
        spelled = bytes(b for d in mine for t in d.get("logprobs", ()) for b in t["bytes"]).decode("utf-8", "replace")
        assert spelled.strip() == "".join(d["delta"] for d in mine).strip() == final["transcript"].strip()


# -- Realtime --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [24000, 16000])
def test_realtime_sdk_server_vad(server, phrases, rate):
    data, starts = speech_at(phrases, rate)
    events = asyncio.run(realtime_events(server, rate, data, len(starts), seed=rate))
    finals = check_phrase_order(events, starts)
    for final, start in zip(finals, starts):
        assert abs(final["audio_start_ms"] - start) < 600 and final["audio_end_ms"] > final["audio_start_ms"]
        assert final["end_reason"] == "silence"
        if final["transcript"].strip():
            assert final["words"] and all(final["audio_start_ms"] / 1000 <= w["start"] <= w["end"]
                                          <= final["audio_end_ms"] / 1000 for w in final["words"])


def test_realtime_sdk_manual_commit_turns(server, phrases):
    rate = 24000
    data, starts = speech_at(phrases, rate)
    chunks = pieces(data, rate, seed=5)
    # Commit in the silence after each phrase (the server's VAD would not end a turn by itself).
    ends, at, commit_after = [], 0, []
    for (audio, source_rate), start in zip(phrases, starts):
        ends.append(start + 1000 * len(audio) / source_rate + 600)
    for i, chunk in enumerate(chunks):
        at += len(chunk) / 2 / rate * 1000
        if ends and at >= ends[0]:
            commit_after.append(i)
            ends.pop(0)
    events = asyncio.run(realtime_events(server, rate, data, len(starts), session=ga_session(rate, vad=False),
                                         commit_after=commit_after, seed=5))
    finals = check_phrase_order(events, starts, vad=False)
    assert [f["end_reason"] for f in finals] == ["forced", "forced"]


def test_realtime_beta_shape_and_browser_key(server, phrases):
    """The older beta session shape (pcm16 at 24 kHz) and the browser's key subprotocol."""
    data, starts = speech_at(phrases[:1], 24000)
    url = base_url(server).replace("http", "ws") + "/realtime?intent=transcription"

    async def main():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, protocols=("realtime", f"openai-insecure-api-key.{TOKEN}")) as ws:
                assert ws.protocol == "realtime"
                created = await ws.receive_json()
                await ws.send_json({"type": "transcription_session.update", "session": {
                    "input_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1",
                                                                                  "language": "en"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}})
                updated = await ws.receive_json()
                for chunk in pieces(data, 24000):
                    await ws.send_json({"type": "input_audio_buffer.append",
                                        "audio": base64.b64encode(chunk).decode()})
                events = []
                while not events or events[-1]["type"] != COMPLETED:
                    events.append(await asyncio.wait_for(ws.receive_json(), 60))
                return created, updated, events

    created, updated, events = asyncio.run(main())
    assert created["type"] == "session.created" and created["session"]["type"] == "transcription"
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_format"] == "pcm16"
    assert updated["session"]["turn_detection"]["silence_duration_ms"] == 500
    assert [e["type"] for e in events][0] == STARTED and events[-1]["language"] in ("English", "")


def test_websocket_and_grpc_give_the_same_finals(server, phrases):
    data, starts = speech_at(phrases, 16000)
    events = asyncio.run(realtime_events(server, 16000, data, len(starts), session=ga_session(16000)))
    ws_finals = [(e["transcript"], e["audio_start_ms"], e["audio_end_ms"], [w["word"] for w in e["words"]])
                 for e in events if e["type"] == COMPLETED]

    async def grpc():
        async with AsyncStreamingClient(f"127.0.0.1:{server.port}", token=TOKEN) as client:
            chunks = pieces(data, 16000)
            return [item async for item in client.stream(chunks, AudioFormat(16000),
                                                         RecognitionOptions(word_timestamps=True,
                                                                            interim_results=True))]

    grpc_finals = [(r.transcript, r.start_ms, r.end_ms, [w.word for w in r.words])
                   for r in asyncio.run(grpc()) if isinstance(r, Result) and r.is_final]
    assert ws_finals == grpc_finals


async def raw_session(server, *, token: str = TOKEN, configure: bool = True, rate: int = 16000):
    url = base_url(server).replace("http", "ws") + "/realtime?intent=transcription"
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    assert (await ws.receive_json())["type"] == "session.created"
    if configure:
        await ws.send_json({"type": "session.update", "session": ga_session(rate, words=False)})
        assert (await ws.receive_json())["type"] == "session.updated"
    return http, ws


def test_realtime_bad_input(server, phrases):
    """Each bad input gets an OpenAI error event; the session (and others) go on."""
    data, starts = speech_at(phrases, 16000)

    async def main():
        # A good session runs alongside the bad one throughout.
        good = asyncio.create_task(realtime_events(server, 16000, data, len(starts), session=ga_session(16000)))
        http, ws = await raw_session(server, configure=False)
        errors = []

        async def expect_error(message):
            await (ws.send_str(message) if isinstance(message, str) else ws.send_json(message))
            event = await asyncio.wait_for(ws.receive_json(), 10)
            assert event["type"] == "error", event
            errors.append(event["error"])

        pcm = base64.b64encode(data[:3200]).decode()
        await expect_error({"type": "input_audio_buffer.append", "audio": pcm, "event_id": "ev1"})  # not configured
        await expect_error("{not json")
        await expect_error({"type": "response.create"})
        await expect_error({"type": "no.such.event"})
        await expect_error({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/opus"}}}}})
        await expect_error({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 96000}}}}})
        await expect_error({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"transcription": {"language": "Klingon"}}}}})
        await ws.send_json({"type": "session.update", "session": ga_session(16000, words=False)})
        assert (await ws.receive_json())["type"] == "session.updated"
        await expect_error({"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%"})
        await expect_error({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()})
        await expect_error({"type": "input_audio_buffer.commit"})  # nothing to commit
        # Still alive: audio is taken and the buffer can be cleared.
        await ws.send_json({"type": "input_audio_buffer.append", "audio": pcm})
        await ws.send_json({"type": "input_audio_buffer.clear"})
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "input_audio_buffer.cleared"
        # An append over OpenAI's 15 MiB, and a frame larger than the largest append, are refused
        # with an error event (not a close); the session goes on.
        big = base64.b64encode(bytes(MAX_APPEND_BYTES + 2)).decode()
        await expect_error({"type": "input_audio_buffer.append", "audio": big})
        await expect_error("x" * (APPEND_FRAME_BYTES + 1))
        await ws.send_json({"type": "input_audio_buffer.clear"})
        cleared = await asyncio.wait_for(ws.receive_json(), 10)
        await http.close()
        good_events = await good
        return errors, cleared, good_events

    errors, cleared, good_events = asyncio.run(main())
    codes = [e["code"] for e in errors]
    assert codes == ["session_not_configured", "invalid_json", "invalid_event_type", "invalid_event_type",
                     "unsupported_audio_format", "invalid_value", "invalid_value", "invalid_audio", "invalid_audio",
                     "input_audio_buffer_commit_empty", "payload_too_large", "payload_too_large"]
    assert errors[0]["event_id"] == "ev1"
    assert all(e["type"] and e["message"] for e in errors)
    assert {e["type"] for e in errors[-2:]} == {"invalid_request_error"}
    assert cleared["type"] == "input_audio_buffer.cleared"
    check_phrase_order(good_events, starts)


def test_realtime_append_larger_than_a_grpc_message(server, phrases):
    """OpenAI takes appends up to 15 MiB: the whole recording in one append (over --max-message-bytes)
    is transcribed as if it came in pieces."""
    data, starts = speech_at(phrases, 16000)
    assert len(data) > 2 * server.options.max_message_bytes

    async def main():
        http, ws = await raw_session(server)
        await ws.send_json({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})
        events = []
        while sum(e["type"] == COMPLETED for e in events) < len(starts):
            events.append(await asyncio.wait_for(ws.receive_json(), 60))
        await http.close()
        return events

    events = asyncio.run(main())
    assert not [e for e in events if e["type"] == "error"], events
    started = [e["audio_start_ms"] for e in events if e["type"] == STARTED]
    assert len(started) == len(starts) and all(abs(a - b) < 400 for a, b in zip(started, starts)), (started, starts)
    completed = [e for e in events if e["type"] == COMPLETED]
    assert [e["audio_end_ms"] > s for e, s in zip(completed, starts)] == [True] * len(starts)


def test_realtime_wrong_token_and_intent(server):
    async def main():
        with pytest.raises(Exception) as wrong:
            async with (sdk(server, "wrong") as client,
                        client.realtime.connect(extra_query={"intent": "transcription"}) as conn):
                await conn.recv()
        async with aiohttp.ClientSession() as http:
            url = base_url(server) + "/realtime?intent=conversation"
            async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                return wrong.value, r.status, await r.json()

    wrong, status, body = asyncio.run(main())
    assert "401" in str(wrong)
    assert status == 400 and body["error"]["code"] == "unsupported_intent"


def test_idle_client_gets_an_error_event(engine):
    """A client that stops sending (and reading), before or after its first audio, is ended with an
    idle_timeout error event and a close; the admission is released."""
    options = ServerOptions(port=0, http_port=free_port(), idle_timeout_s=1.0, max_streams=1)
    with ServerThread(options, {"tiny": engine}) as server:
        async def main(send_audio: bool):
            http, ws = await raw_session(server, configure=send_audio)
            if send_audio:
                await ws.send_json({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(bytes(3200)).decode()})
            event = await asyncio.wait_for(ws.receive_json(), 10)
            closed = await asyncio.wait_for(ws.receive(), 10)
            await http.close()
            return event, closed

        for send_audio in (False, True):  # max_streams=1: the second runs only if the first was released
            event, closed = asyncio.run(main(send_audio))
            assert event["type"] == "error" and event["error"]["code"] == "idle_timeout"
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008


def test_drain_ends_a_connection_without_audio_at_once(engine):
    options = ServerOptions(port=0, http_port=free_port(), grace_s=20.0)
    server = ServerThread(options, {"tiny": engine}).start()

    async def main():
        http, ws = await raw_session(server)  # configured, but no audio yet: no session in the core
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = loop.run_in_executor(None, server.stop)
        event = await asyncio.wait_for(ws.receive_json(), 10)
        closed = await asyncio.wait_for(ws.receive(), 10)
        await http.close()
        await stopping
        return event, closed, loop.time() - started

    event, closed, seconds = asyncio.run(main())
    assert event["error"]["code"] == "service_unavailable" and closed.data == 1012
    assert seconds < 5  # not the grace period


def test_busy_draining_and_probes(engine, phrases):
    """Admission is shared with gRPC: a full server answers 429, a draining one 503 (and /readyz 503)."""
    data, _ = speech_at(phrases[:1], 16000)
    options = ServerOptions(port=0, http_port=free_port(), max_streams=1, grace_s=6.0)
    server = ServerThread(options, {"tiny": engine}).start()
    base = f"http://127.0.0.1:{server.server.http_port}"

    async def main():
        async with aiohttp.ClientSession() as http:
            live = (await http.get(base + "/livez")).status
            ready = (await http.get(base + "/readyz")).status
            page = await (await http.get(base + "/")).text()
            client, ws = await raw_session(server)
            # Half a phrase: the session is in speech, so the drain waits for the utterance.
            await ws.send_json({"type": "input_audio_buffer.append",
                                "audio": base64.b64encode(data[:len(data) // 3 // 2 * 2]).decode()})
            await wait_until_async(lambda: speaking_sessions(server) == 1, what="the Realtime session in speech")
            def form():
                data = aiohttp.FormData()
                data.add_field("file", b"RIFF", filename="a.wav")
                data.add_field("model", "whisper-1")
                return data

            busy = await http.post(base + "/v1/audio/transcriptions", data=form())
            try:
                await http.ws_connect(base + "/v1/realtime?intent=transcription")
            except aiohttp.WSServerHandshakeError as refused:
                busy_ws = refused.status
            plain_get = (await http.get(base + "/v1/realtime?intent=transcription")).status
            async with AsyncStreamingClient(server.address) as grpc_client:  # one admission for both protocols
                with pytest.raises(grpc.aio.AioRpcError) as grpc_busy:
                    await grpc_client.recognize(data[:3200], AudioFormat(16000))
            metrics = await (await http.get(base + "/metrics")).text()
            stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
            await wait_until_async(lambda: server.server.calls.draining, what="the server draining")
            draining = await http.get(base + "/readyz")
            refused = await http.post(base + "/v1/audio/transcriptions", data=form())
            ended = []  # the utterance in progress is finished, then the drain's error and the close
            while (message := await asyncio.wait_for(ws.receive(), 10)).type == aiohttp.WSMsgType.TEXT:
                ended.append(json.loads(message.data))
            ended.append(message.data)
            await client.close()
            await stopping
            assert grpc_busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "asr_active_streams 1.0" in metrics
            return (live, ready, page, busy.status, (await busy.json())["error"]["type"], (busy_ws, plain_get),
                    draining.status, refused.status, (await refused.json())["error"]["code"], ended)

    live, ready, page, busy, busy_type, busy_ws, draining, refused, refused_code, ended = asyncio.run(main())
    assert (live, ready) == (200, 200) and "<title>Live captions" in page
    assert (busy, busy_type, busy_ws) == (429, "rate_limit_error", (429, 400))
    assert (draining, refused, refused_code) == (503, 503, "service_unavailable")
    types = [e["type"] for e in ended[:-1]]
    assert types[0] == STARTED and STOPPED in types and types[-2:] == [COMPLETED, "error"], types
    assert ended[-2]["error"]["code"] == "service_unavailable" and ended[-1] == 1012


# -- key terms (our extension; OpenAI's prompt stays context) -----------------------------------------

TERM = "zebra"  # at the default boost (4 logits) the random checkpoint spells it on these phrases


def test_rest_key_terms_steer_decoding_and_prompt_stays_context(server, wav_file):
    """``key_terms[]`` (through the SDK's extra_body) steers decoding toward the term; the same
    words as ``prompt`` are context only and do not appear in the output; bounds are 400s."""
    path, _ = wav_file

    async def main():
        async with sdk(server) as client:
            plain = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path.open("rb"))
            prompted = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path.open("rb"),
                                                                prompt=TERM)
            steered = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path.open("rb"),
                                                               extra_body={"key_terms": [TERM]})
            with pytest.raises(openai.BadRequestError) as refused:
                await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path.open("rb"),
                                                         extra_body={"key_terms": ["k" * 65]})
            return plain.text, prompted.text, steered.text, refused.value

    plain, prompted, steered, refused = asyncio.run(main())
    assert TERM not in plain.lower() and TERM not in prompted.lower(), (plain, prompted)
    assert TERM in steered.lower(), steered
    assert refused.status_code == 400 and "the limit is 64" in str(refused)  # the one check (check_terms)


def test_realtime_key_terms_and_their_change_mid_session(server, phrases):
    """``transcription.key_terms`` steers decoding of the items; a session.update that changes
    only the key terms after the audio started applies them to the items that start from then
    on (other changes are still refused); beyond the limits an error event, and the session goes on."""
    data, starts = speech_at(phrases, 24000)
    events = asyncio.run(realtime_events(server, 24000, data, len(starts), session=ga_session(24000, key_terms=[TERM])))
    updated = next(e for e in events if e["type"] == "session.updated")
    assert updated["session"]["audio"]["input"]["transcription"]["key_terms"] == [TERM]
    completed = [e["transcript"] for e in events if e["type"] == COMPLETED]
    assert any(TERM in t.lower() for t in completed), completed

    async def mid_session():
        http, ws = await raw_session(server)
        try:
            await ws.send_json({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 3200).decode()})
            session = ga_session(16000, words=False, key_terms=["Pipecat"])
            await ws.send_json({"type": "session.update", "session": session})
            changed = await asyncio.wait_for(ws.receive_json(), 10)
            session["audio"]["input"]["transcription"]["key_terms"] = [f"t{i}" for i in range(101)]
            await ws.send_json({"type": "session.update", "session": session})
            too_many = await asyncio.wait_for(ws.receive_json(), 10)
            session["audio"]["input"]["transcription"].update(key_terms=["Pipecat"], language="de")
            await ws.send_json({"type": "session.update", "session": session})
            other = await asyncio.wait_for(ws.receive_json(), 10)
            return changed, too_many, other
        finally:
            await ws.close()
            await http.close()

    changed, too_many, other = asyncio.run(mid_session())
    assert changed["type"] == "session.updated", changed
    assert changed["session"]["audio"]["input"]["transcription"]["key_terms"] == ["Pipecat"]
    assert too_many["type"] == "error" and "the limit is 100" in too_many["error"]["message"], too_many
    assert other["type"] == "error" and other["error"]["code"] == "session_already_started", other
