from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("_webrtcvad", reason="webrtcvad (server extra) is needed")
from conftest import synthesize  # noqa: E402

from qwen3_asr_stream.audio.vad import (  # noqa: E402
    BufferOverflow,
    EndpointingOptions,
    EndReason,
    SampleRing,
    Segmenter,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
)

SR = 16_000
TOLERANCE_MS = 150


def ms(x: float) -> int:
    return int(round(x * SR / 1000))


def vowel(seconds: float, f0: float = 140.0, amplitude: float = 0.1) -> np.ndarray:
    """A voiced-speech-like tone: harmonics of f0 with a 4 Hz syllable-rate envelope."""
    t = np.arange(ms(seconds * 1000)) / SR
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    return (amplitude * wave * (1 + 0.3 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def noise_burst(seconds: float, rng, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * rng.standard_normal(ms(seconds * 1000))).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(ms(seconds * 1000), np.float32)


def energy_classifier(frame: np.ndarray) -> bool:
    """Deterministic stand-in for webrtcvad where exact positions matter."""
    return float(np.sqrt(np.mean(frame**2))) > 0.01


def timeline(parts, rng, background: float = 0.002):
    """Concatenate (kind, signal) parts; returns the signal and the speech spans in samples."""
    spans, pos, pieces = [], 0, []
    for kind, piece in parts:
        if kind == "speech":
            spans.append((pos, pos + len(piece)))
        pieces.append(piece)
        pos += len(piece)
    signal = np.concatenate(pieces)
    return signal + (background * rng.standard_normal(len(signal))).astype(np.float32), spans


@dataclass
class Utterance:
    index: int
    onset: int
    speech_end: int
    audio_start: int
    audio_end: int
    reason: EndReason


def run(segmenter: Segmenter, signal: np.ndarray, chunk: int = 1000, finish=EndReason.END_OF_STREAM):
    events = []
    for i in range(0, len(signal), chunk):
        events += segmenter.push(signal[i : i + chunk])
    if finish is not None:
        events += segmenter.finish(finish)
    return events


def utterances(events, signal: np.ndarray) -> list[Utterance]:
    """Check the event grammar and that the audio is exactly the signal; return the utterances."""
    found, current, audio_to = [], None, None
    for event in events:
        if isinstance(event, SpeechStarted):
            assert current is None, "SpeechStarted inside an utterance"
            assert event.utterance_index == len(found)
            assert event.audio_start_sample <= event.sample
            if found:
                assert event.audio_start_sample >= found[-1].audio_end  # disjoint utterances
            current, audio_to = event, event.audio_start_sample
        elif isinstance(event, SpeechAudio):
            assert current is not None and event.utterance_index == current.utterance_index
            assert event.start_sample == audio_to, "utterance audio must be contiguous"
            assert event.samples.dtype == np.float32
            np.testing.assert_array_equal(event.samples, signal[event.start_sample : event.end_sample])
            audio_to = event.end_sample
        else:
            assert isinstance(event, SpeechEnded) and current is not None
            assert event.utterance_index == current.utterance_index
            assert event.audio_end_sample == audio_to
            assert event.audio_start_sample == current.audio_start_sample
            assert current.audio_start_sample <= event.sample <= event.audio_end_sample
            found.append(Utterance(event.utterance_index, current.sample, event.sample,
                                   current.audio_start_sample, event.audio_end_sample, event.reason))
            current = None
    assert current is None, "an utterance was left open"
    return found


def assert_each_speech_sample_in_one_utterance(found: list[Utterance], spans):
    for start, end in spans:
        covered = np.zeros(end - start, int)
        for u in found:
            a, b = max(start, u.audio_start), min(end, u.audio_end)
            if a < b:
                covered[a - start : b - start] += 1
        assert (covered == 1).all(), f"speech {start / SR:.2f}-{end / SR:.2f}s covered {covered.min()}..{covered.max()} times"


def assert_boundaries(found: list[Utterance], spans):
    assert len(found) == len(spans), [(u.onset / SR, u.speech_end / SR) for u in found]
    for u, (start, end) in zip(found, spans):
        assert abs(u.onset - start) <= ms(TOLERANCE_MS), ("start", u.onset / SR, start / SR)
        assert abs(u.speech_end - end) <= ms(TOLERANCE_MS), ("end", u.speech_end / SR, end / SR)
        # Pre-roll and hangover: the utterance audio extends beyond the speech.
        assert u.audio_start <= start and u.audio_end >= end


# -- generated signals --------------------------------------------------------------------------


def generated(rng):
    return timeline([
        ("silence", silence(1.0)),
        ("speech", vowel(0.8)),
        ("silence", silence(1.2)),
        ("speech", noise_burst(0.5, rng)),
        ("silence", silence(1.0)),
        ("speech", vowel(1.5, f0=220, amplitude=0.2)),
        ("silence", silence(1.0)),
    ], rng)


@pytest.mark.parametrize("aggressiveness", [2, 3])
def test_generated_segments_found_at_known_boundaries(aggressiveness):
    signal, spans = generated(np.random.default_rng(1))
    events = run(Segmenter(EndpointingOptions(aggressiveness=aggressiveness)), signal)
    found = utterances(events, signal)
    assert_boundaries(found, spans)
    assert all(u.reason is EndReason.SILENCE for u in found)
    assert_each_speech_sample_in_one_utterance(found, spans)


@pytest.mark.parametrize("aggressiveness", [0, 1])
def test_less_aggressive_modes_keep_all_speech(aggressiveness):
    # webrtcvad's own hangover is longer in modes 0-1 (ends ~200 ms late), so only the
    # count and the coverage are checked here.
    signal, spans = generated(np.random.default_rng(1))
    found = utterances(run(Segmenter(EndpointingOptions(aggressiveness=aggressiveness)), signal), signal)
    assert len(found) == len(spans)
    assert_each_speech_sample_in_one_utterance(found, spans)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_chunking_does_not_change_events(frame_ms):
    signal, spans = generated(np.random.default_rng(2))
    opts = EndpointingOptions(frame_ms=frame_ms)

    def summary(chunk):
        found = utterances(run(Segmenter(opts), signal, chunk), signal)
        return [(u.onset, u.speech_end, u.audio_start, u.audio_end) for u in found]

    reference = summary(len(signal))
    assert len(reference) == len(spans)
    for chunk in (37, 160, 4801):
        assert summary(chunk) == reference


def test_pre_roll_and_hangover_lengths():
    signal, spans = timeline([("silence", silence(1.0)), ("speech", vowel(1.0)), ("silence", silence(1.5))],
                             np.random.default_rng(3), background=0)
    opts = EndpointingOptions(pre_roll_ms=200, hangover_ms=250, frame_ms=10)
    (u,) = utterances(run(Segmenter(opts, classifier=energy_classifier), signal), signal)
    assert u.onset == spans[0][0] and u.speech_end == spans[0][1]
    assert u.onset - u.audio_start == ms(200)
    assert u.audio_end - u.speech_end == ms(250)


def test_offsets_do_not_reset_and_events_are_ordered():
    signal, spans = generated(np.random.default_rng(4))
    found = utterances(run(Segmenter(), signal), signal)
    ends = [u.audio_end for u in found]
    assert ends == sorted(ends) and found[-1].onset > SR * 4  # offsets from stream start


# -- real synthesized speech ---------------------------------------------------------------------


def speak(espeak, text: str, tmp_path) -> np.ndarray:
    soundfile = pytest.importorskip("soundfile")
    soxr = pytest.importorskip("soxr")
    path = synthesize(espeak, text, tmp_path / "speech.wav")
    audio, rate = soundfile.read(path, dtype="float32")
    audio = soxr.resample(audio, rate, SR).astype(np.float32)
    # Trim espeak's own leading/trailing silence so the known boundaries are the speech.
    level = np.sqrt(np.convolve(audio**2, np.ones(160) / 160, "same"))
    loud = np.nonzero(level > 0.01)[0]
    return audio[loud[0] : loud[-1] + 1]


def test_synthesized_speech_segments(espeak, tmp_path):
    rng = np.random.default_rng(5)
    first = speak(espeak, "Hello there, how are you today?", tmp_path)
    second = speak(espeak, "Streaming speech recognition keeps the first and the last phoneme.", tmp_path)
    signal, spans = timeline([
        ("silence", silence(1.0)),
        ("speech", first),
        ("silence", silence(1.5)),
        ("speech", second),
        ("silence", silence(1.2)),
    ], rng)
    found = utterances(run(Segmenter(), signal, chunk=800), signal)
    assert_boundaries(found, spans)
    assert_each_speech_sample_in_one_utterance(found, spans)

    # FINALIZE in the middle of the second sentence: the utterance ends there and the rest
    # of the sentence starts the next one without losing a sample.
    segmenter = Segmenter()
    middle = (spans[1][0] + spans[1][1]) // 2
    events = run(segmenter, signal[:middle], chunk=800, finish=EndReason.FORCED)
    assert isinstance(events[-1], SpeechEnded) and events[-1].reason is EndReason.FORCED
    events += run(segmenter, signal[middle:], chunk=800)
    found = utterances(events, signal)
    assert [u.reason for u in found] == [EndReason.SILENCE, EndReason.FORCED, EndReason.SILENCE]
    assert found[1].audio_end == middle and found[2].audio_start == middle
    assert_each_speech_sample_in_one_utterance(found, spans)


# -- forced finish and end of stream -------------------------------------------------------------


def test_forced_finish_mid_speech_and_in_silence():
    rng = np.random.default_rng(6)
    signal, spans = timeline([("silence", silence(0.5)), ("speech", vowel(2.0)), ("silence", silence(1.0))], rng)
    segmenter = Segmenter(classifier=energy_classifier)
    cut = spans[0][0] + ms(1000) + 77  # not on a frame boundary: the partial frame goes too
    events = run(segmenter, signal[:cut], finish=EndReason.FORCED)
    assert segmenter.finish(EndReason.FORCED) == []  # nothing in progress any more
    events += run(segmenter, signal[cut:], finish=None)
    assert segmenter.finish(EndReason.FORCED) == []  # in silence: nothing to end
    events += segmenter.finish(EndReason.END_OF_STREAM)
    found = utterances(events, signal)
    assert [u.reason for u in found] == [EndReason.FORCED, EndReason.SILENCE]
    assert found[0].audio_end == cut == found[1].audio_start
    assert_each_speech_sample_in_one_utterance(found, spans)
    with pytest.raises(RuntimeError):
        segmenter.push(signal[:10])


def test_end_of_stream_inside_speech_keeps_everything():
    signal, spans = timeline([("silence", silence(0.5)), ("speech", vowel(1.0))], np.random.default_rng(7))
    signal = signal[: len(signal) - 123]  # ends inside a frame
    spans = [(spans[0][0], len(signal))]
    (u,) = utterances(run(Segmenter(classifier=energy_classifier), signal), signal)
    assert u.reason is EndReason.END_OF_STREAM and u.audio_end == len(signal)
    assert_each_speech_sample_in_one_utterance([u], spans)


def test_finish_rejects_other_reasons():
    with pytest.raises(ValueError, match="FORCED or END_OF_STREAM"):
        Segmenter().finish(EndReason.SILENCE)


# -- maximum utterance length --------------------------------------------------------------------


def test_max_length_cuts_at_the_quietest_point():
    rng = np.random.default_rng(8)
    opts = EndpointingOptions(max_utterance_ms=2000, pre_roll_ms=300, frame_ms=10)
    speech = np.concatenate([vowel(3.5, amplitude=0.2), vowel(1.0, f0=180, amplitude=0.2)])
    # The utterance audio starts 300 ms (pre-roll) before the speech at 1.0 s; the cut must fall
    # in its last fifth, 1.6-2.0 s after that start. A 20 ms dip at 1.8 s is the quietest place
    # there; a quieter dip at 1.2 s (before the search window) must be ignored.
    speech[ms(1500) : ms(1520)] *= 0.01
    speech[ms(900) : ms(920)] *= 0.001
    signal, spans = timeline([("silence", silence(1.0)), ("speech", speech), ("silence", silence(1.0))], rng, 0.0005)
    found = utterances(run(Segmenter(opts, classifier=energy_classifier), signal), signal)
    first_cut = spans[0][0] + ms(1500)
    assert found[0].reason is EndReason.MAX_LENGTH
    assert found[0].audio_start == spans[0][0] - ms(300)
    cut = found[0].audio_end
    assert first_cut <= cut < first_cut + ms(20), "the cut must fall in the dip"
    assert found[0].speech_end == cut == found[1].audio_start
    for u in found:
        assert u.audio_end - u.audio_start <= ms(2000)
    assert [u.reason for u in found][-1] is EndReason.SILENCE
    assert all(u.reason is EndReason.MAX_LENGTH for u in found[:-1])
    # No gap between the pieces: the speech is split, not trimmed.
    for a, b in zip(found, found[1:]):
        assert a.audio_end == b.audio_start
    assert_each_speech_sample_in_one_utterance(found, spans)


def test_max_length_with_speech_ending_before_the_cut_does_not_start_an_empty_utterance():
    opts = EndpointingOptions(max_utterance_ms=2000, pre_roll_ms=0, hangover_ms=200, frame_ms=10)
    # Speech of 1.9 s then silence: the stop window (600 ms) is not full at 2.0 s, the
    # quietest point is in the silence after the speech.
    signal, spans = timeline([("silence", silence(1.0)), ("speech", vowel(1.9)), ("silence", silence(1.5))],
                             np.random.default_rng(9), background=0)
    found = utterances(run(Segmenter(opts, classifier=energy_classifier), signal), signal)
    assert len(found) == 1 and found[0].reason is EndReason.MAX_LENGTH
    assert found[0].speech_end == spans[0][1]
    assert found[0].audio_end == spans[0][1] + ms(100)  # hangover clipped at the maximum length


# -- ring buffer and options ---------------------------------------------------------------------


def test_long_push_stays_in_bounded_ring():
    rng = np.random.default_rng(10)
    opts = EndpointingOptions(max_utterance_ms=5000)
    signal, spans = timeline([("silence", silence(2.0)), ("speech", vowel(12.0)), ("silence", silence(2.0)),
                              ("speech", noise_burst(1.0, rng)), ("silence", silence(1.0))], rng)
    segmenter = Segmenter(opts)
    found = utterances(run(segmenter, signal, chunk=len(signal)), signal)
    assert segmenter._ring.capacity == opts.ring_samples < ms(5000)
    assert len(found) >= 4 and found[-1].reason is EndReason.SILENCE
    assert_each_speech_sample_in_one_utterance(found, spans)


def test_sample_ring_wraps_and_refuses_overflow():
    ring = SampleRing(10)
    ring.append(np.arange(8, dtype=np.float32))
    ring.discard_before(6)
    ring.append(np.arange(8, 16, dtype=np.float32))  # wraps around
    np.testing.assert_array_equal(ring.read(6, 16), np.arange(6, 16))
    assert ring.free == 0
    with pytest.raises(BufferOverflow):
        ring.append(np.zeros(1, np.float32))


def test_defaults_are_valid():
    opts = EndpointingOptions()
    assert opts.start_voiced_frames == 5 and opts.stop_unvoiced_frames == 18
    assert opts.ring_samples >= opts.cut_window_samples


@pytest.mark.parametrize("changes, message", [
    ({"frame_ms": 25}, "frame_ms must be one of"),
    ({"aggressiveness": 4}, "aggressiveness must be 0-3"),
    ({"aggressiveness": -1}, "aggressiveness must be 0-3"),
    ({"aggressiveness": 1.5}, "must be an integer"),
    ({"start_window_ms": 0}, "start_window_ms must be"),
    ({"stop_window_ms": 20_000}, "stop_window_ms must be"),
    ({"start_threshold": 0.0}, r"start_threshold .* \(0, 1\]"),
    ({"stop_threshold": 1.5}, r"stop_threshold .* \(0, 1\]"),
    ({"pre_roll_ms": -10}, "pre_roll_ms must be"),
    ({"hangover_ms": 700}, "hangover_ms must be 0 to stop_window_ms"),
    ({"max_utterance_ms": 500}, "max_utterance_ms must be"),
    ({"max_utterance_ms": 10**9}, "max_utterance_ms must be"),
    ({"ring_capacity_ms": 100}, "ring_capacity_ms 100 is too small"),
])
def test_options_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        EndpointingOptions(**changes)


def test_pre_roll_never_reaches_into_the_previous_utterance():
    signal, spans = timeline([("silence", silence(1.0)), ("speech", vowel(1.0)), ("silence", silence(0.7)),
                              ("speech", vowel(0.5)), ("silence", silence(1.0))], np.random.default_rng(11), 0)
    opts = EndpointingOptions(pre_roll_ms=500, hangover_ms=300, frame_ms=10)
    first, second = utterances(run(Segmenter(opts, classifier=energy_classifier), signal), signal)
    assert first.audio_end == spans[0][1] + ms(300)
    assert second.onset == spans[1][0] and second.audio_start == first.audio_end  # pre-roll clipped
