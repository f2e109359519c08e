"""Live speaker diarization on a synthesized meeting of three eSpeak NG voices, through a real
server with the resemblyzer speaker model (real GE2E weights from its wheel) and unchanged clients.

The voices differ in variant and pitch (a low male, a high female, a low female): measured with
this model, their utterances' embeddings are 0.58-0.75 similar between voices and 0.83-0.91 within
one, so a clustering threshold of 0.8 separates them. The tiny ASR checkpoint has random weights,
so its text is random: asr.v1, Realtime and REST are read through the results' speaker turns (time
spans), which come from the speaker model's windows, with no aligner (a split inside an utterance
falls on the 0.4 s window grid). Riva's speakers are only words' ``speaker_tag``, so its test runs
the scripted engine and an aligner that spreads the words evenly over the voiced audio, and reads
the turns from the tagged words' times.

DER (pyannote.metrics, collar 0.5 s, i.e. +-0.25 s around each reference boundary) must stay
under 0.15; measured 0.065 on asr.v1 and 0.003 on Riva. The rest is what a correct run costs:
each turn carries the VAD's pre-roll and hangover around the speech, partly outside the collar
(Riva's word-made turns carry none), and the split inside the changing utterance falls on the
window grid or a word boundary. Each utterance is about a seventh of the meeting's speech, so a
single utterance given the wrong speaker (10-15 %) fails the bound.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr

from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions, Result

pytest.importorskip("webrtcvad")
pytest.importorskip("resemblyzer")
from pyannote.core import Annotation, Segment, Timeline  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate  # noqa: E402

from qwen3_asr_stream.engine.speakers import ResemblyzerEncoder  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.testing.speech import synthesize  # noqa: E402

RATE = 16000
VOICES = {"A": ("en-us", 25), "B": ("en-us+f2", 95), "C": ("en+f4", 20)}
# (voice, text, gap before the next piece in s): a gap of 0.15 s keeps one utterance going.
SCRIPT = [
    ("A", "good morning everyone, let us start with the budget for next year", 1.3),
    ("B", "thank you, i have the numbers from the finance team right here", 1.3),
    ("C", "before that we should talk about hiring two more engineers", 1.3),
    ("A", "that sounds right, the design review went very well yesterday", 0.15),
    ("B", "and please send me all of the slides after lunch today", 1.3),
    ("C", "i agree, we can close the meeting now, thank you all", 1.3),
    ("A", "see you all again next week at the same time", 1.3),
]
DER_BOUND = 0.15


class Meeting:
    def __init__(self) -> None:
        parts, self.reference, at = [np.zeros(int(0.5 * RATE), np.float32)], Annotation(), 0.5
        self.pieces = []
        for voice, text, gap in SCRIPT:
            audio, rate = synthesize(text, VOICES[voice][0], pitch=VOICES[voice][1])
            audio = soxr.resample(audio.astype(np.float32) / 32768, rate, RATE).astype(np.float32)
            audible = np.nonzero(np.abs(audio) > 0.01)[0]
            audio = audio[audible[0]: audible[-1] + 1]
            self.reference[Segment(at, at + len(audio) / RATE)] = voice
            self.pieces.append((voice, at, at + len(audio) / RATE))
            parts += [audio, np.zeros(int(gap * RATE), np.float32)]
            at += len(audio) / RATE + gap
        self.audio = np.concatenate(parts)

    @property
    def pcm(self) -> bytes:
        return (np.clip(self.audio, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def meeting(espeak) -> Meeting:
    return Meeting()


@pytest.fixture(scope="module")
def server(engine):
    """No aligner: the random one's word times would put the split inside an utterance on random
    boundaries; without words it falls on the speaker model's 0.4 s window grid."""
    with ServerThread(ServerOptions(port=0), {"tiny": engine}, None, ResemblyzerEncoder()) as server:
        yield server


def hypothesis_of(turns) -> Annotation:
    """(speaker, start_ms, end_ms) turns -> an annotation."""
    out = Annotation()
    for speaker, start, end in turns:
        out[Segment(start / 1000, end / 1000)] = f"spk{speaker}"
    return out


def check_meeting(meeting: Meeting, turns) -> float:
    """DER under the bound; every voice always gets the same one label, and each label one voice."""
    whole = Timeline([Segment(0, len(meeting.audio) / RATE)])
    der = DiarizationErrorRate(collar=0.5)(meeting.reference, hypothesis_of(turns), uem=whole)
    labels: dict[str, set] = {}
    for voice, start, end in meeting.pieces:
        middle = 1000 * (start + end) / 2
        owner = [s for s, a, b in turns if a <= middle < b]
        assert owner, (voice, start, end, turns)
        labels.setdefault(voice, set()).add(owner[0])
    assert all(len(v) == 1 for v in labels.values()), labels  # stable labels
    assert len({next(iter(v)) for v in labels.values()}) == 3, labels  # three different speakers
    assert labels["A"] == {1}  # the first voice is speaker 1
    assert der < DER_BOUND, der
    return der


def test_asr_v1_meeting(server, meeting):
    options = RecognitionOptions(interim_results=False, word_timestamps=False, diarization=True, max_speakers=4)

    async def run():
        async with AsyncStreamingClient(server.address) as client:
            step = AudioFormat(RATE).chunk_bytes(100)
            data = meeting.pcm
            chunks = [data[i:i + step] for i in range(0, len(data), step)]
            return [i async for i in client.stream(chunks, AudioFormat(RATE), options, realtime=True)]

    finals = [i for i in asyncio.run(run()) if isinstance(i, Result) and i.is_final]
    assert len(finals) == 6, [(f.start_ms, f.end_ms) for f in finals]
    spoken = [f for f in finals if f.transcript.strip()]
    assert all(f.speaker in (1, 2, 3) and f.speaker_turns for f in spoken)
    assert [len(f.speaker_turns) for f in finals] == [1, 1, 1, 2, 1, 1]  # the fourth changes speaker
    turns = [(t.speaker, t.start_ms, t.end_ms) for f in finals for t in f.speaker_turns]
    print("DER", check_meeting(meeting, turns))


class EvenAligner:
    """The forced aligner's interface with each word an equal share of its utterance's voiced audio
    (the first to the last sample above 0.01). The random tiny aligner puts words anywhere in their
    utterance; this test is about the speakers Riva's words carry, so the word times stand in."""

    def align(self, requests):
        from qwen3_asr_stream.text.alignment import WordTime, split_words

        out = []
        for request in requests:
            words, voiced = split_words(request.text, request.language), np.nonzero(np.abs(request.audio) > 0.01)[0]
            if not words or not len(voiced):
                out.append([])
                continue
            start, step = voiced[0] / RATE, (voiced[-1] + 1 - voiced[0]) / RATE / len(words)
            out.append([WordTime(w, round(start + i * step, 3), round(start + (i + 1) * step, 3))
                        for i, w in enumerate(words)])
        return out


@pytest.fixture(scope="module")
def riva_server():
    """The scripted engine (a word per 0.4 s of audio: the random tiny model's text has no words in
    some utterances, and Riva's speakers are words' tags) and the even aligner; the speaker model and
    everything after it are real."""
    from qwen3_asr_stream.testing.fake_engine import FakeEngine

    with FakeEngine() as engine, ServerThread(ServerOptions(port=0), {"tiny": engine}, EvenAligner(),
                                              ResemblyzerEncoder()) as server:
        yield server


def turns_of_words(words) -> list[tuple[int, int, int]]:
    """Riva words of one final -> (speaker_tag, start_ms, end_ms) turns: runs of words of one tag."""
    turns: list[tuple[int, int, int]] = []
    for w in words:
        if turns and turns[-1][0] == w.speaker_tag:
            turns[-1] = (w.speaker_tag, turns[-1][1], w.end_time)
        else:
            turns.append((w.speaker_tag, w.start_time, w.end_time))
    return turns


def test_riva_client_meeting(riva_server, meeting, tmp_path):
    """nvidia-riva-client unchanged, diarization through its own helper: speaker_tag on every word,
    the meeting's DER from the words' tags and times."""
    import wave

    import riva.client

    path = tmp_path / "meeting.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes(meeting.pcm)
    asr = riva.client.ASRService(riva.client.Auth(uri=riva_server.address))
    config = riva.client.StreamingRecognitionConfig(config=riva.client.RecognitionConfig(
        encoding=riva.client.AudioEncoding.LINEAR_PCM, language_code="en-US", max_alternatives=1),
        interim_results=False)
    riva.client.add_audio_file_specs_to_config(config, str(path))
    riva.client.add_speaker_diarization_to_config(config, True, 4)
    with riva.client.AudioChunkFileIterator(str(path), 1600, riva.client.sleep_audio_length) as chunks:
        responses = list(asr.streaming_response_generator(chunks, config))
    finals = [r.results[0] for r in responses if r.results and r.results[0].is_final]
    assert len(finals) == 6, [f.alternatives[0].transcript for f in finals]
    words = [f.alternatives[0].words for f in finals]
    turns = [turns_of_words(ws) for ws in words]
    assert all(ws and all(w.speaker_tag in (1, 2, 3) for w in ws) for ws in words), turns
    assert [len(t) for t in turns] == [1, 1, 1, 2, 1, 1], turns  # the fourth changes speaker
    print("DER", check_meeting(meeting, [t for ts in turns for t in ts]))


@pytest.fixture(scope="module")
def http_server(engine):
    from conftest import free_port

    with ServerThread(ServerOptions(port=0, http_port=free_port()), {"tiny": engine}, None,
                      ResemblyzerEncoder()) as server:
        yield server


@pytest.mark.filterwarnings("ignore::UserWarning")  # the SDK's serializer on a transcription session
def test_realtime_meeting(http_server, meeting):
    """The OpenAI Realtime WebSocket (the official SDK) with a "-diarize" model name: each completed
    item has its speaker and diarized segments."""
    import base64

    from openai import AsyncOpenAI

    from conftest import ga_session

    options = http_server.options
    data = (np.clip(soxr.resample(meeting.audio, RATE, 24000), -1, 1) * 32767).astype("<i2").tobytes()

    async def run(server):
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{options.http_port}/v1", api_key="x", max_retries=0)
        events = []
        async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            await conn.session.update(session=ga_session(24000, words=False, model="gpt-4o-transcribe-diarize"))
            step = 24000 * 2 // 10

            async def send():
                for i in range(0, len(data), step):
                    await conn.input_audio_buffer.append(audio=base64.b64encode(data[i:i + step]).decode())
                    await asyncio.sleep(0.1)  # real time

            sender = asyncio.create_task(send())
            while sum(e["type"].endswith("transcription.completed") for e in events) < 6:
                event = (await asyncio.wait_for(conn.recv(), 60)).to_dict()
                assert event["type"] != "error", event
                events.append(event)
            await sender
        return [e for e in events if e["type"].endswith("transcription.completed")]

    completed = asyncio.run(run(http_server))
    assert [len(c.get("segments", [])) for c in completed] == [1, 1, 1, 2, 1, 1], completed
    turns = [(ord(s["speaker"]) - ord("A") + 1, round(1000 * s["start"]), round(1000 * s["end"]))
             for c in completed for s in c["segments"]]
    print("DER", check_meeting(meeting, turns))


def test_rest_diarized_json(http_server, meeting, tmp_path):
    """OpenAI REST ``response_format=diarized_json``: speaker-labelled segments of the whole file."""
    import aiohttp

    from conftest import wav_bytes

    async def post(**fields):
        form = aiohttp.FormData()
        form.add_field("file", wav_bytes(meeting.pcm, RATE), filename="meeting.wav")
        for key, value in fields.items():
            form.add_field(key, value)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{http_server.options.http_port}/v1/audio/transcriptions",
                                 data=form) as response:
                return response.status, await response.json()

    status, body = asyncio.run(post(model="gpt-4o-transcribe-diarize", response_format="diarized_json",
                                    chunking_strategy="auto"))
    assert status == 200, body
    segments = body["segments"]
    assert all(s["type"] == "transcript.text.segment" and s["speaker"] in "ABC" for s in segments)
    turns = [(ord(s["speaker"]) - ord("A") + 1, round(1000 * s["start"]), round(1000 * s["end"])) for s in segments]
    check_meeting(meeting, turns)
    status, body = asyncio.run(post(response_format="diarized_json", **{"known_speaker_names[]": "alice"}))
    assert status == 400 and "known speakers" in body["error"]["message"]


def test_bad_diarization_requests(server, engine):
    """min above max, max beyond the server's limit, and a server without a speaker model (the message
    names the flag): INVALID_ARGUMENT, through asr.v1 and Riva alike."""
    import grpc
    from riva.client.proto import riva_asr_pb2 as rasr

    from conftest import call_status_sync, riva_recognize
    from qwen3_asr_client.proto import asr_pb2

    def asr_call(address, **diarization):
        config = asr_pb2.RecognitionConfig(sample_rate_hertz=RATE, diarization=asr_pb2.DiarizationConfig(**diarization))
        first = asr_pb2.StreamingRecognizeRequest(streaming_config=asr_pb2.StreamingRecognitionConfig(config=config))
        code, details, _ = call_status_sync(address, [first, asr_pb2.StreamingRecognizeRequest(audio_content=b"\0" * 3200)])
        return code, details

    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert asr_call(server.address, enable=True, min_speakers=3, max_speakers=2)[0] == bad
    code, details = asr_call(server.address, enable=True, max_speakers=9)
    assert code == bad and "limit of 8" in details and "--max-speakers" in details
    with ServerThread(ServerOptions(port=0), {"tiny": engine}) as plain:
        code, details = asr_call(plain.address, enable=True)
        assert code == bad and "--speaker-model" in details
        assert riva_recognize(plain.address, b"\0" * 3200, sample_rate_hertz=RATE, diarization_config=
                              rasr.SpeakerDiarizationConfig(enable_speaker_diarization=True)) == bad


def test_separate_channels_each_only_its_own_phrases(server, meeting):
    """The meeting as a 3-channel stream, one voice per channel (silence on the others while it
    speaks), recognized per channel: each channel's finals lie inside its own voice's phrases;
    mixed down (the default) the same audio gives one sequence without channels."""
    voices = sorted(VOICES)
    channels = np.zeros((len(meeting.audio), len(voices)), np.float32)
    for voice, start, end in meeting.pieces:
        a, b = int(start * RATE), int(end * RATE)
        channels[a:b, voices.index(voice)] = meeting.audio[a:b]
    pcm = (np.clip(channels, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = AudioFormat(RATE, channels=3)

    def run(options):
        async def go():
            async with AsyncStreamingClient(server.address) as client:
                step = fmt.chunk_bytes(100)
                chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
                return [i async for i in client.stream(chunks, fmt, options)]
        return [i for i in asyncio.run(go()) if isinstance(i, Result) and i.is_final]

    separate = run(RecognitionOptions(interim_results=False, word_timestamps=False, separate_channels=True))
    assert len(separate) == len(meeting.pieces)  # the changing utterance is two phrases on two channels
    pieces_of = {c + 1: [(1000 * s, 1000 * e) for v, s, e in meeting.pieces if v == voices[c]] for c in range(3)}
    for final in separate:
        assert final.channel in (1, 2, 3)
        middle = (final.start_ms + final.end_ms) / 2
        assert any(s - 400 <= middle <= e + 400 for s, e in pieces_of[final.channel]), (final, pieces_of)
    assert sorted(f.channel for f in separate) == sorted(voices.index(v) + 1 for v, _, _ in meeting.pieces)
    assert [f.utterance_index for f in separate] == list(range(len(separate)))
    mixed = run(RecognitionOptions(interim_results=False, word_timestamps=False))
    assert len(mixed) == 6 and all(f.channel is None for f in mixed)


def test_diarization_is_refused_while_the_speaker_model_is_behind(engine):
    """A speaker model that cannot keep up: a new stream asking for speakers is refused as busy
    (RESOURCE_EXHAUSTED naming what helps) while one without diarization is served; once the model
    has caught up, diarization is served again. The backlog is real: long audio queued on the
    speaker worker behind the batch it runs."""
    import grpc

    from conftest import call_status_sync, wait_until
    from qwen3_asr_client.proto import asr_pb2

    def asr_call(address, diarize):
        config = asr_pb2.RecognitionConfig(sample_rate_hertz=RATE,
                                           diarization=asr_pb2.DiarizationConfig(enable=diarize))
        first = asr_pb2.StreamingRecognizeRequest(streaming_config=asr_pb2.StreamingRecognitionConfig(config=config))
        code, details, _ = call_status_sync(address, [first, asr_pb2.StreamingRecognizeRequest(audio_content=b"\0" * 3200)])
        return code, details

    options = ServerOptions(port=0, max_speaker_backlog_s=0.2)
    with ServerThread(options, {"tiny": engine}, None, ResemblyzerEncoder()) as server:
        worker = server.server.backend.speakers
        audio = np.random.default_rng(0).standard_normal(256 * 6400).astype(np.float32) * 0.1  # 254 windows each
        # The worker takes about 256 windows a batch: one or two of these; the rest wait, each
        # 254 windows of 1.5-4 ms (batched, on one thread), so the backlog stays above 0.2 s
        # until the last one is taken.
        pending = [worker.submit(audio) for _ in range(8)]
        wait_until(lambda: worker.backlog_s > 0.4, timeout=60)
        code, details = asr_call(server.address, diarize=True)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert "speaker model is" in details and "behind" in details and "--speaker-threads" in details
        assert asr_call(server.address, diarize=False)[0] == grpc.StatusCode.OK
        for future in pending:
            future.result(timeout=120)
        assert worker.backlog_s == 0
        assert asr_call(server.address, diarize=True)[0] == grpc.StatusCode.OK
