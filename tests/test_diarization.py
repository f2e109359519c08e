"""Live speaker diarization on a synthesized meeting of three eSpeak NG voices, through a real
server with the resemblyzer speaker model (real GE2E weights from its wheel) and unchanged clients.

The voices differ in variant and pitch (a low male, a high female, a low female): measured with
this model, their utterances' embeddings are 0.58-0.75 similar between voices and 0.83-0.91 within
one, so a clustering threshold of 0.8 separates them. The tiny ASR and aligner checkpoints have
random weights, so the text and the word times are random: the test reads the speakers from the
results' turns (time spans), which come from the speaker model's windows; where an utterance
changes speaker, the split falls on one of the (random) word boundaries nearest the change.

DER (pyannote.metrics, collar 0.5 s, i.e. +-0.25 s around each reference boundary) must stay
under 0.15; measured 0.065 on asr.v1. The rest is what a correct run costs: each turn carries the
VAD's pre-roll and hangover around the speech, partly outside the collar, and the split inside the
changing utterance falls on the 0.4 s window grid. Each utterance is about a seventh of the
meeting's speech, so a single utterance given the wrong speaker (10-15 %) fails the bound.
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
