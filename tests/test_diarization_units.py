"""The online clustering and the split inside an utterance, on constructed embeddings (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from qwen3_asr_stream.session.diarization import DiarizationOptions, SpeakerClusters, decide

DIM = 16


def voice(i: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = 1.0
    v += noise * np.random.default_rng(seed).standard_normal(DIM)
    return v / np.linalg.norm(v)


def windows(voices: list[int], hop: int = 6400, width: int = 25600, seed: int = 0):
    """One window per hop; ``voices[k]`` speaks window k."""
    emb = np.stack([voice(v, 0.05, seed + k) for k, v in enumerate(voices)])
    spans = np.array([[k * hop, k * hop + width] for k in range(len(voices))])
    return emb, spans, (len(voices) - 1) * hop + width


def test_labels_are_stable_and_in_order_of_first_speech():
    clusters = SpeakerClusters(DiarizationOptions(threshold=0.8))
    order = [3, 5, 3, 7, 5, 5, 3, 7]
    labels = [clusters.assign(voice(v, 0.1, seed=i)) for i, v in enumerate(order)]
    assert labels == [1, 2, 1, 3, 2, 2, 1, 3]


def test_the_speaker_limit_gives_the_nearest_existing_label():
    clusters = SpeakerClusters(DiarizationOptions(max_speakers=2))
    assert [clusters.assign(voice(v)) for v in (0, 1)] == [1, 2]
    near_first = voice(0) * 0.6 + voice(2) * 0.4
    assert clusters.assign(near_first / np.linalg.norm(near_first)) == 1 and clusters.count == 2


def test_a_change_inside_an_utterance_splits_at_the_nearest_word_boundary():
    emb, spans, length = windows([0] * 6 + [1] * 6)  # the voice changes at window 6 (9.6 s .. )
    change = 6 * 6400 + 25600 // 2  # not used by the rule: windows wholly on each side are compared
    words = [(s, s + 4000) for s in range(0, length - 4000, 8000)]
    decided = decide(SpeakerClusters(DiarizationOptions()), emb, spans, words, length)
    assert [t[0] for t in decided.turns] == [1, 2]
    boundary = decided.turns[1][1]
    assert boundary in [w[0] for w in words]  # on a word boundary
    assert abs(boundary - change) <= 2 * 25600, (boundary, change)
    assert set(decided.word_speakers) == {1, 2} and decided.word_speakers == tuple(sorted(decided.word_speakers))


def test_a_side_of_too_little_speech_is_not_split_off():
    """The utterance's last windows hold its hangover's silence, which embeds as no one's voice:
    counted as audio, that side is split off (and would be a new speaker); counted as speech
    (the VAD's end), it is too short for a turn of its own."""
    emb, spans, length = windows([0] * 8 + [1] * 3)  # windows 8-10 (from 3.2 s) sound unlike windows 0-7
    assert len(decide(SpeakerClusters(DiarizationOptions()), emb, spans, [], length).turns) == 2
    speech_end = 8 * 6400  # the speech ends where window 8 starts: windows 8-10 are mostly hangover
    decided = decide(SpeakerClusters(DiarizationOptions()), emb, spans, [], length, (0, speech_end))
    assert len(decided.turns) == 1 and decided.speaker == 1


def test_one_odd_window_is_not_split_off():
    """A side of a split needs two windows wholly inside it: one window alone (1.6 s, often part
    pause or hangover) is too noisy a voice to start a new turn on; two are enough."""
    emb, spans, length = windows([0] * 10)
    odd = 0.3 * voice(0) + 0.954 * voice(1)  # 0.3 similar to the others; with its neighbour, 0.8
    emb[-1] = odd / np.linalg.norm(odd)
    assert len(decide(SpeakerClusters(DiarizationOptions()), emb, spans, [], length).turns) == 1
    emb, spans, length = windows([0] * 9 + [1] * 3)  # three windows of another voice: a turn of its own
    assert [t[0] for t in decide(SpeakerClusters(DiarizationOptions()), emb, spans, [], length).turns] == [1, 2]


def test_one_voice_is_one_turn_and_options_are_checked():
    emb, spans, length = windows([2] * 10)
    decided = decide(SpeakerClusters(DiarizationOptions()), emb, spans, [], length)
    assert decided.speaker == 1 and len(decided.turns) == 1
    with pytest.raises(ValueError, match="min_speakers"):
        DiarizationOptions(min_speakers=5, max_speakers=4)
    with pytest.raises(ValueError, match="max_speakers"):
        DiarizationOptions(max_speakers=33)


def test_resemblyzer_front_end_in_torch_equals_its_own():
    """The torch mel front end of the resemblyzer model equals resemblyzer's librosa one, and the
    windows' embeddings equal those of resemblyzer's own embed_utterance partials."""
    pytest.importorskip("resemblyzer")
    import soxr

    from qwen3_asr_stream.engine.speakers import ResemblyzerEncoder, embed_windows
    from qwen3_asr_stream.testing.speech import synthesize

    encoder = ResemblyzerEncoder()
    speech, rate = synthesize("the meeting starts with the budget for next year and more")
    audio = soxr.resample(speech.astype(np.float32) / 32768, rate, 16000).astype(np.float32)
    piece = audio[: encoder.width]
    ours = encoder.mel(piece[None])[0]
    theirs = encoder._reference_mel(piece)[: encoder.width // 160]
    assert np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * float(np.abs(theirs).max()))
    embeddings, spans = embed_windows(encoder, audio)
    _, partials, slices = encoder._encoder.embed_utterance(audio, return_partials=True, rate=2.5)
    assert [s[0] for s in spans] == [s.start for s in slices][: len(spans)]
    n = min(len(embeddings), len(partials))
    assert np.all(np.sum(embeddings[:n] * partials[:n], axis=1) > 0.98)  # (edge frames: each window alone)
    # Embedded as the audio arrives (complete windows of a prefix, then the rest) = all at once.
    head = embed_windows(encoder, audio[:50000], complete_only=True)[0]
    rest = embed_windows(encoder, audio, first=len(head))[0]
    assert np.allclose(np.concatenate([head, rest]), embeddings, atol=1e-5)
