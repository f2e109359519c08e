"""Every surface takes the codecs its protocol documents (issue 22): real eSpeak NG speech encoded
by PyAV into each format, sent by the unchanged official clients (asr.v1's, nvidia-riva-client,
the openai SDK) to a real server; checked against the PCM run of the same speech.

For each codec: the decoded audio's duration as reported equals the recording's (20 ms), word
times are inside the audio and in step with the PCM run (mean |difference| of word ends
< 40 ms where the two runs give the same words), and every bad input ends its own call with the
protocol's error while a healthy stream beside it keeps all its results.
"""

from __future__ import annotations

import asyncio
import logging
import base64
import io

import grpc
import numpy as np
import pytest
import soxr

pytest.importorskip("av")
pytest.importorskip("webrtcvad")

import riva.client  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from riva.client.proto import riva_asr_pb2 as rasr  # noqa: E402
from riva.client.proto import riva_audio_pb2 as raudio  # noqa: E402

from conftest import free_port, synthesize  # noqa: E402
from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions, Result  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.testing.codecs import corrupt_middle, cut_middle, encode, random_cuts, video_only  # noqa: E402

LEAD_S, GAP_S = 0.5, 1.2
WORD_END_MS = 40  # mean |difference| of word ends against the PCM run
DURATION_MS = 20
OPTIONS = RecognitionOptions(language="English", interim_results=False, word_timestamps=True)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def server(engine, aligner):
    options = ServerOptions(port=0, http_port=free_port(), max_recognize_bytes=4 << 20)
    with ServerThread(options, {"tiny": engine}, aligner) as server:
        yield server


@pytest.fixture(scope="module")
def speech(espeak, tmp_path_factory) -> tuple[np.ndarray, int]:
    """Two phrases with silence around them: (int16 samples, rate)."""
    import soundfile

    folder = tmp_path_factory.mktemp("codec-speech")
    parts, rate = [], None
    for i, text in enumerate(["the quick brown fox jumps over the lazy dog", "hello world this is a test"]):
        audio, rate = soundfile.read(str(synthesize(espeak, text, folder / f"{i}.wav")), dtype="int16")
        parts += [np.zeros(int((LEAD_S if i == 0 else GAP_S) * rate), np.int16), audio]
    parts.append(np.zeros(int(GAP_S * rate), np.int16))
    return np.concatenate(parts), rate


def at_rate(speech, rate: int) -> np.ndarray:
    audio, source = speech
    if source == rate:
        return audio
    return np.clip(soxr.resample(audio.astype(np.float32), source, rate), -32768, 32767).astype(np.int16)


def duration_ms(samples: np.ndarray, rate: int) -> float:
    return 1000 * len(samples) / rate


# -- comparing a codec's run with the PCM run ------------------------------------------------------

def word_ends(finals) -> list[tuple[str, int]]:
    return [(w.word, w.end_ms) for r in finals for w in r.words]


def check_in_step(finals: list[list[int]], pcm: list[list[int]], audio_ms: float) -> float:
    """``finals``: each final's word ends (ms), the codec's run and the PCM run's. The words are
    inside the audio and their ends in step with the PCM run: the mean |difference| of the ends,
    word by word within each utterance (the tiny random model's words can differ in number, or be
    none, when the audio does, so the pairs are the common ones). Returns the mean."""
    assert len(finals) == len(pcm) and any(finals), (finals, pcm)
    assert all(0 <= end <= audio_ms + DURATION_MS for ends in finals for end in ends), (finals, audio_ms)
    diffs = [abs(a - b) for ends, pcm_ends in zip(finals, pcm) for a, b in zip(ends, pcm_ends)]
    mean = float(np.mean(diffs))
    assert mean < WORD_END_MS, (finals, pcm)
    return mean


async def asr_stream(server, chunks, fmt: AudioFormat, *, pace_s: float = 0.0) -> list[Result]:
    """Stream through asr.v1; ``pace_s``: the whole input spread over this many seconds (real time)."""
    async def paced():
        per = pace_s / max(1, len(chunks))
        for chunk in chunks:
            yield chunk
            if per:
                await asyncio.sleep(per)

    async with AsyncStreamingClient(server.address) as client:
        return [i async for i in client.stream(paced(), fmt, OPTIONS) if isinstance(i, Result) and i.is_final]


async def asr_recognize(server, data: bytes, fmt: AudioFormat):
    async with AsyncStreamingClient(server.address) as client:
        return await client.recognize(data, fmt, OPTIONS, raw=True)


@pytest.fixture(scope="module")
def pcm_words(server, speech):
    """The PCM run of the speech at a rate: each final's word ends (asr.v1, unary)."""
    cache = {}

    def get(rate: int) -> list[list[int]]:
        if rate not in cache:
            audio = at_rate(speech, rate)
            response = asyncio.run(asr_recognize(server, audio.tobytes(), AudioFormat(rate)))
            cache[rate] = [[w.end_ms for w in r.words] for r in response.results]
        return cache[rate]
    return get


# -- asr.v1: Ogg/Opus and WebM/Opus streamed in real time, cut anywhere ---------------------------

@pytest.mark.parametrize("fmt,encoding", [("ogg_opus", "OGG_OPUS"), ("webm_opus", "WEBM_OPUS"),
                                          ("webm_opus", "CONTAINER")])
def test_asr_v1_streams_opus_in_real_time(server, speech, pcm_words, fmt, encoding):
    audio, rate = speech
    data = encode(audio, rate, fmt)
    chunks = random_cuts(data, np.random.default_rng(1), 20, 400)
    finals = asyncio.run(asr_stream(server, chunks, AudioFormat(0, 1, encoding), pace_s=duration_ms(audio, rate) / 1000))
    check_in_step([[w.end_ms for w in r.words] for r in finals], pcm_words(rate), duration_ms(audio, rate))
    assert finals[-1].audio_processed_ms <= duration_ms(audio, rate) + DURATION_MS


@pytest.mark.parametrize("fmt,encoding", [("flac", "FLAC"), ("mp3", "CONTAINER"), ("m4a", "CONTAINER"),
                                          ("ogg_opus", "OGG_OPUS"), ("mulaw", "MULAW"), ("alaw", "ALAW")])
def test_asr_v1_recognize_reports_the_recording_duration(server, speech, pcm_words, fmt, encoding):
    rate = 8000 if encoding in ("MULAW", "ALAW") else speech[1]
    audio = at_rate(speech, rate)
    response = asyncio.run(asr_recognize(server, encode(audio, rate, fmt),
                                         AudioFormat(rate if rate == 8000 else 0, 1, encoding)))
    assert abs(response.audio_duration_ms - duration_ms(audio, rate)) <= DURATION_MS
    check_in_step([[w.end_ms for w in r.words] for r in response.results], pcm_words(rate), duration_ms(audio, rate))


# -- Riva: G.711 at 8 kHz, Ogg/Opus streamed; FLAC and Opus offline (nvidia-riva-client unchanged) ----

def riva_config(encoding, rate: int) -> rasr.RecognitionConfig:
    return riva.client.RecognitionConfig(encoding=encoding, sample_rate_hertz=rate, language_code="en-US",
                                         max_alternatives=1, enable_word_time_offsets=True)


def riva_stream(server, chunks, config, pace_s: float = 0.0):
    import time

    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))

    def paced():
        for chunk in chunks:
            yield chunk
            time.sleep(pace_s / len(chunks))

    streaming = riva.client.StreamingRecognitionConfig(config=config, interim_results=False)
    responses = list(asr.streaming_response_generator(paced(), streaming))
    return [r.results[0] for r in responses if r.results and r.results[0].is_final]


@pytest.mark.parametrize("fmt,encoding,rate", [("mulaw", raudio.MULAW, 8000), ("alaw", raudio.ALAW, 8000),
                                               ("ogg_opus", raudio.OGGOPUS, 48000)])
def test_riva_streams_g711_and_opus(server, speech, pcm_words, fmt, encoding, rate):
    source_rate = 8000 if rate == 8000 else speech[1]
    audio = at_rate(speech, source_rate)
    data = encode(audio, source_rate, fmt)
    size = 160 if rate == 8000 else None  # 20 ms of G.711, as a phone call sends it
    chunks = [data[i:i + size] for i in range(0, len(data), size)] if size else \
        random_cuts(data, np.random.default_rng(2), 20, 400)
    finals = riva_stream(server, chunks, riva_config(encoding, rate), pace_s=duration_ms(audio, source_rate) / 1000)
    check_in_step([[w.end_time for w in r.alternatives[0].words] for r in finals], pcm_words(source_rate),
                  duration_ms(audio, source_rate))
    assert 1000 * finals[-1].audio_processed <= duration_ms(audio, source_rate) + DURATION_MS


@pytest.mark.parametrize("fmt,encoding,rate", [("flac", raudio.FLAC, 0), ("ogg_opus", raudio.OGGOPUS, 0),
                                               ("mulaw", raudio.MULAW, 8000), ("alaw", raudio.ALAW, 8000)])
def test_riva_offline_recognize(server, speech, pcm_words, fmt, encoding, rate):
    source_rate = rate or speech[1]
    audio = at_rate(speech, source_rate)
    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))
    response = asr.offline_recognize(encode(audio, source_rate, fmt), riva_config(encoding, rate))
    check_in_step([[w.end_time for w in r.alternatives[0].words] for r in response.results],
                  pcm_words(source_rate), duration_ms(audio, source_rate))


# -- OpenAI Realtime: g711_ulaw / g711_alaw (beta), audio/pcmu / audio/pcma (GA), the openai SDK --------

COMPLETED = "conversation.item.input_audio_transcription.completed"


def sdk(server) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"http://127.0.0.1:{server.server.http_port}/v1", api_key="unused", max_retries=0)


async def realtime_finals(server, session_event: dict, chunks: list[bytes], n_finals: int) -> list[dict]:
    events = []
    async with (sdk(server) as client,
                client.realtime.connect(extra_query={"intent": "transcription"}) as conn):
        await conn.send(session_event)

        async def send():
            for chunk in chunks:
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                await asyncio.sleep(0.002)

        sender = asyncio.create_task(send())
        while sum(e["type"] == COMPLETED for e in events) < n_finals:
            event = (await asyncio.wait_for(conn.recv(), 60)).to_dict()
            assert event["type"] != "error", event
            events.append(event)
        await sender
    return [e for e in events if e["type"] == COMPLETED], events


def beta_update(fmt: str) -> dict:
    return {"type": "transcription_session.update", "session": {
        "input_audio_format": fmt, "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
        "include": ["item.input_audio_transcription.words"]}}


def ga_update(fmt: str) -> dict:
    return {"type": "session.update", "session": {
        "type": "transcription", "audio": {"input": {
            "format": {"type": fmt}, "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 600}}},
        "include": ["item.input_audio_transcription.words"]}}


@pytest.mark.parametrize("codec,update", [("mulaw", beta_update("g711_ulaw")), ("alaw", beta_update("g711_alaw")),
                                          ("mulaw", ga_update("audio/pcmu")), ("alaw", ga_update("audio/pcma"))])
def test_realtime_g711(server, speech, pcm_words, codec, update):
    audio = at_rate(speech, 8000)
    data = encode(audio, 8000, codec)
    chunks = [data[i:i + 160] for i in range(0, len(data), 160)]
    finals, events = asyncio.run(realtime_finals(server, update, chunks, len(pcm_words(8000))))
    updated = next(e for e in events if e["type"].endswith("session.updated"))["session"]
    if "input_audio_format" in updated:
        assert updated["input_audio_format"] == update["session"]["input_audio_format"]
    else:
        assert updated["audio"]["input"]["format"] == {"type": update["session"]["audio"]["input"]["format"]["type"],
                                                       "rate": 8000}
    ends = [[round(1000 * w["end"]) if isinstance(w["end"], float) else w["end"] for w in f["words"]]
            for f in finals]
    check_in_step(ends, pcm_words(8000), duration_ms(audio, 8000))


# -- OpenAI REST: every file type, the openai SDK ---------------------------------------------------

REST_FILES = {"speech.mp3": "mp3", "speech.m4a": "m4a", "speech.webm": "webm_opus", "speech.ogg": "ogg_opus",
              "speech.flac": "flac", "speech.wav": "wav", "speech.mp4": "mp4", "vorbis.ogg": "ogg_vorbis"}


@pytest.mark.parametrize("name", sorted(REST_FILES))
def test_rest_takes_every_file_type(server, speech, pcm_words, name):
    audio, rate = speech
    data = encode(audio, rate, REST_FILES[name])

    async def main():
        async with sdk(server) as client:
            return await client.audio.transcriptions.create(
                model="whisper-1", file=(name, io.BytesIO(data)), response_format="verbose_json",
                timestamp_granularities=["word", "segment"])

    verbose = asyncio.run(main())
    assert abs(verbose.duration * 1000 - duration_ms(audio, rate)) <= DURATION_MS
    ends_by_segment = [[round(1000 * w.end) for w in verbose.words if s.start <= w.start and w.end <= s.end + 1e-3]
                       for s in verbose.segments]
    check_in_step(ends_by_segment, pcm_words(rate), duration_ms(audio, rate))


# -- bad input: each call ends with its protocol's error, a healthy stream beside it keeps all ----------

def no_tracebacks(caplog) -> None:
    bad = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, bad


async def asr_outcome(server, chunks, fmt: AudioFormat, pace_s: float = 0.0):
    """(finals, status code, details) of an asr.v1 stream."""
    finals = []
    try:
        async with AsyncStreamingClient(server.address) as client:
            async def paced():
                for chunk in chunks:
                    yield chunk
                    await asyncio.sleep(pace_s / len(chunks))
            async for item in client.stream(paced(), fmt, OPTIONS):
                if isinstance(item, Result) and item.is_final:
                    finals.append(item)
    except grpc.aio.AioRpcError as exc:
        return finals, exc.code(), exc.details()
    return finals, grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def bad_inputs(speech):
    """name -> (bytes, asr.v1 encoding, declared rate, words its error names, finals expected before it)."""
    audio, rate = speech
    ogg, flac = encode(audio, rate, "ogg_opus"), encode(audio, rate, "flac")
    return {
        "WAV sent as Ogg Opus": (encode(audio, rate, "wav"), "OGG_OPUS", 0, "not Ogg Opus", False),
        "MP3 sent as FLAC": (encode(audio, rate, "mp3"), "FLAC", 0, "not a FLAC stream", False),
        "corrupt Ogg page mid-stream": (corrupt_middle(ogg), "OGG_OPUS", 0, "fails its checksum", True),
        "FLAC frame cut mid-stream": (cut_middle(flac), "FLAC", 0, "the stream is corrupt", True),
        "WebM with no audio track": (video_only("webm"), "WEBM_OPUS", 0, "no audio track", False),
        "rate contradicting the stream": (ogg, "OGG_OPUS", 16000, "says 16000 Hz", False),
        "M4A stream over the size limit": (encode(np.tile(audio, 3), rate, "m4a", bit_rate=128_000), "CONTAINER",
                                           0, "larger than", False),
        "MP3 frames cut mid-stream": (cut_middle(encode(audio, rate, "mp3")), "CONTAINER", 0, "MP3: no frame header",
                                      True),
    }


def test_asr_v1_bad_inputs_beside_a_healthy_stream(small_server, speech, bad_inputs, caplog):
    server = small_server
    caplog.set_level(logging.INFO)
    audio, rate = speech
    healthy = encode(audio, rate, "webm_opus")
    alone = asyncio.run(asr_outcome(server, random_cuts(healthy, np.random.default_rng(3), 20, 400),
                                    AudioFormat(0, 1, "WEBM_OPUS")))[0]
    async def main():
        calls = [asr_outcome(server, random_cuts(healthy, np.random.default_rng(3), 20, 400),
                             AudioFormat(0, 1, "WEBM_OPUS"), pace_s=duration_ms(audio, rate) / 1000)]
        for data, encoding, declared, _, _ in bad_inputs.values():
            calls.append(asr_outcome(server, random_cuts(data, np.random.default_rng(4), 20, 400),
                                     AudioFormat(declared, 1, encoding), pace_s=2.0))
        return await asyncio.gather(*calls)

    outcomes = asyncio.run(main())
    finals, code, _ = outcomes[0]
    assert code == grpc.StatusCode.OK
    assert [(f.transcript, f.start_ms, f.end_ms) for f in finals] == [(f.transcript, f.start_ms, f.end_ms)
                                                                    for f in alone]
    for (name, (_, _, _, words, results_before)), (finals, code, details) in zip(bad_inputs.items(), outcomes[1:]):
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, details)
        assert words in details, (name, details)
        if results_before:  # the first utterance, before the damage, was recognized and sent
            assert finals and finals[0].end_ms < duration_ms(audio, rate) / 2, (name, finals)
    no_tracebacks(caplog)


@pytest.fixture(scope="module")
def small_server(engine, aligner):
    """A server whose unary / whole-file limit is 64 KiB (~2 s of 16 kHz 16-bit audio)."""
    options = ServerOptions(port=0, http_port=free_port(), max_recognize_bytes=64 << 10)
    with ServerThread(options, {"tiny": engine}, aligner) as server:
        yield server


def riva_outcome(server, data: bytes, config, chunk: int = 300):
    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))
    finals = []
    try:
        streaming = riva.client.StreamingRecognitionConfig(config=config, interim_results=False)
        chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        for response in asr.streaming_response_generator(iter(chunks), streaming):
            finals += [r for r in response.results if r.is_final]
    except grpc.RpcError as exc:
        return finals, exc.code(), exc.details()
    return finals, grpc.StatusCode.OK, ""


RIVA_ENCODINGS = {"OGG_OPUS": raudio.OGGOPUS, "FLAC": raudio.FLAC}


def test_riva_bad_inputs_streaming_and_offline(server, speech, bad_inputs, caplog):
    import threading

    caplog.set_level(logging.INFO)
    audio, rate = speech
    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))
    # A healthy G.711 call streams in real time beside the bad ones and keeps all its results.
    pcm8k = at_rate(speech, 8000)
    g711 = encode(pcm8k, 8000, "mulaw")
    chunks = [g711[i:i + 160] for i in range(0, len(g711), 160)]
    alone = riva_stream(server, chunks, riva_config(raudio.MULAW, 8000))
    beside = []
    healthy = threading.Thread(target=lambda: beside.extend(
        riva_stream(server, chunks, riva_config(raudio.MULAW, 8000), pace_s=duration_ms(pcm8k, 8000) / 1000)))
    healthy.start()
    for name, (data, encoding, declared, words, results_before) in bad_inputs.items():
        if encoding not in RIVA_ENCODINGS:
            continue
        config = riva_config(RIVA_ENCODINGS[encoding], declared)
        finals, code, details = riva_outcome(server, data, config)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, (name, code, details)
        if results_before:
            assert finals, name
        with pytest.raises(grpc.RpcError) as error:
            asr.offline_recognize(data, config)
        # Offline, a WAV file's header is read first: it is named for what it is.
        words = "a WAV file but encoding is OGGOPUS" if name == "WAV sent as Ogg Opus" else words
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.value.details(), name
    healthy.join()
    assert [(r.alternatives[0].transcript, [(w.start_time, w.end_time) for w in r.alternatives[0].words])
            for r in beside] == [(r.alternatives[0].transcript, [(w.start_time, w.end_time)
                                                                 for w in r.alternatives[0].words]) for r in alone]
    no_tracebacks(caplog)


def test_rest_bad_files(small_server, speech, caplog):
    server = small_server
    import openai

    caplog.set_level(logging.INFO)
    audio, rate = speech
    m4a = encode(audio, rate, "m4a")
    cases = {  # name -> (file bytes, HTTP status, words of the message)
        "text.mp3": (b"this is not audio at all, only text " * 20, 400, "not audio this server reads"),
        "video.mp4": (video_only("mp4"), 400, "no audio track"),
        "cut.m4a": (m4a[:len(m4a) // 2], 400, "not audio this server reads"),
        "long.mp3": (encode(np.tile(audio, 3), rate, "mp3", bit_rate=8000), 413, "longer than"),
        "large.flac": (encode(np.tile(audio, 3), rate, "flac"), 413, "larger than"),
    }

    async def one(client, name, data):
        try:
            return (200, (await client.audio.transcriptions.create(
                model="whisper-1", file=(name, io.BytesIO(data)), response_format="verbose_json")).text)
        except openai.APIStatusError as exc:
            return exc.status_code, exc.message

    short = encode(audio[:int(1.9 * rate)], rate, "ogg_opus")  # a healthy file under the 2 s limit

    async def main():
        async with sdk(server) as client:
            alone = await one(client, "short.ogg", short)
            results = await asyncio.gather(one(client, "short.ogg", short),
                                           *(one(client, name, data) for name, (data, _, _) in cases.items()))
            return alone, results[0], dict(zip(cases, results[1:]))

    alone, beside, outcomes = asyncio.run(main())
    assert alone[0] == 200 and beside == alone
    for name, (_, status, words) in cases.items():
        assert outcomes[name][0] == status and words in outcomes[name][1], (name, outcomes[name])
    no_tracebacks(caplog)


# -- the client sends a compressed file as it is --------------------------------------------------

@pytest.mark.parametrize("name,fmt,encoding", [("call.opus", "ogg_opus", "OGG_OPUS"), ("meeting.mp3", "mp3", "CONTAINER"),
                                               ("memo.webm", "webm_opus", "CONTAINER")])
def test_cli_streams_a_compressed_file_as_it_is(server, speech, pcm_words, tmp_path, capsys, name, fmt, encoding):
    from qwen3_asr_client import cli, read_audio

    audio, rate = speech
    path = tmp_path / name
    path.write_bytes(encode(audio, rate, fmt))
    assert read_audio(path).format == AudioFormat(0, 1, encoding) and read_audio(path).data == path.read_bytes()
    code = cli.main(["stream", str(path), "--server", server.address, "--json", "--language", "English",
                     "--no-interim"])
    assert code == 0
    import json

    finals = [r for line in capsys.readouterr().out.splitlines() for r in json.loads(line).get("results", [])
              if r.get("is_final")]
    check_in_step([[w.get("end_ms", 0) for w in f.get("words", [])] for f in finals], pcm_words(rate),
                  duration_ms(audio, rate))


def test_rest_takes_mpeg_program_streams(server, speech):
    """.mpeg (MPEG-1 Layer II in a program stream) is read too; Layer II's decoder delay (481
    samples, ~22 ms at 22 kHz) and its last frame's padding (< 1152 samples) are signaled by
    neither the codec nor the container, so they stay in (the only format here whose timing is
    not exact)."""
    audio, rate = speech

    async def main():
        async with sdk(server) as client:
            return await client.audio.transcriptions.create(
                model="whisper-1", file=("speech.mpeg", io.BytesIO(encode(audio, rate, "mpeg"))),
                response_format="verbose_json")

    verbose = asyncio.run(main())
    assert 0 <= verbose.duration * 1000 - duration_ms(audio, rate) <= 1000 * (481 + 1152) / rate
    assert len(verbose.segments) == 2
