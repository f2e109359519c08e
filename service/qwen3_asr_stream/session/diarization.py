"""Live speaker diarization: who spoke each final utterance, decided when it is final.

For every final utterance the speaker model embeds sliding windows of its audio
(``engine/speakers.py``); here, using only those windows and the stream's earlier
decisions:

1. **Changes inside the utterance.** At each word boundary (the aligner's word times)
   with at least ``min_turn_ms`` of speech on both sides (the VAD's speech, without the
   utterance's pre-roll and hangover: a side that is mostly silence embeds as no one's
   voice and would be split off as a new speaker), the mean embedding of the
   windows wholly before it is compared with that of the windows wholly after it (at
   least ``SIDE_WINDOWS`` on each side: one 1.6 s window alone, often part pause, is too
   noisy a voice to split on); at the least similar boundary, if the similarity is below
   ``change_threshold``, the utterance is split there, and each side is examined again
   the same way. Without words (no
   aligner, or a transcript without word units) the boundaries are the starts of the
   speaker model's windows instead.
2. **Online clustering.** Each turn's embedding (the normalized mean of its windows) is
   compared with every speaker of the stream so far (the normalized sum of their turns'
   embeddings); it is the most similar speaker when that similarity is at least
   ``threshold`` or when the stream already has ``max_speakers`` speakers, else a new
   speaker. Labels are 1, 2, 3, ... in the order speakers first spoke and never change:
   the first speaker is speaker 1 an hour later too.

Each word gets the speaker of the turn holding its middle; the final's speaker is the
one that spoke most of its words' time (the only turn's without words). ``min_speakers``
is checked against ``max_speakers`` but cannot steer an online decision (it would need
the future). Numpy only; runs on the event loop (microseconds per utterance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.speakers import MAX_SPEAKERS

SIDE_WINDOWS = 2  # a side of a split: the mean of at least this many windows (one alone is too noisy)



@dataclass(frozen=True)
class DiarizationOptions:
    min_speakers: int = 1
    max_speakers: int = 8  # labels 1..max_speakers; past it, the nearest existing speaker
    threshold: float = 0.8  # cosine similarity to a speaker to be that speaker
    change_threshold: float = 0.7  # a split inside an utterance: its sides' similarity below this
    min_turn_ms: int = 1600  # each side of a split at least this long (one speaker-model window)

    def __post_init__(self) -> None:
        if not 1 <= self.max_speakers <= MAX_SPEAKERS:
            raise ValueError(f"max_speakers must be 1-{MAX_SPEAKERS}, got {self.max_speakers}")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ValueError(f"min_speakers must be 1 to max_speakers ({self.max_speakers}), got {self.min_speakers}")
        if not -1 < self.threshold < 1 or not -1 < self.change_threshold < 1:
            raise ValueError("threshold and change_threshold are cosine similarities, between -1 and 1")
        if self.min_turn_ms < 400:
            raise ValueError(f"min_turn_ms must be at least 400, got {self.min_turn_ms}")


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _mean_inside(embeddings: np.ndarray, spans: np.ndarray, start: int, end: int,
                 least: int = 1) -> np.ndarray | None:
    """The normalized mean of the windows wholly inside ``[start, end)`` samples (None: fewer than
    ``least`` are)."""
    inside = (spans[:, 0] >= start) & (spans[:, 1] <= end)
    return _unit(embeddings[inside].mean(axis=0)) if inside.sum() >= max(1, least) else None


def split_turns(embeddings: np.ndarray, spans: np.ndarray, bounds: list[int], start: int, end: int,
                options: DiarizationOptions, speech: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` (samples) cut at the word boundaries ``bounds`` where the voice changes (step 1);
    ``speech``: the ``[onset, end)`` of the utterance's speech (default: all of ``[start, end)``)."""
    least = options.min_turn_ms * 16
    onset, speech_end = speech if speech is not None else (start, end)
    best, best_sim = None, options.change_threshold
    for b in bounds:
        if min(b, speech_end) - max(start, onset) < least or min(end, speech_end) - max(b, onset) < least:
            continue
        left = _mean_inside(embeddings, spans, start, b, SIDE_WINDOWS)
        right = _mean_inside(embeddings, spans, b, end, SIDE_WINDOWS)
        if left is None or right is None:
            continue
        sim = float(left @ right)
        if sim < best_sim:
            best, best_sim = b, sim
    if best is None:
        return [(start, end)]
    return (split_turns(embeddings, spans, bounds, start, best, options, speech)
            + split_turns(embeddings, spans, bounds, best, end, options, speech))


class SpeakerClusters:
    """The speakers of one stream so far (step 2)."""

    def __init__(self, options: DiarizationOptions) -> None:
        self.options = options
        self._sums: list[np.ndarray] = []  # per speaker: the sum of its turns' unit embeddings

    @property
    def count(self) -> int:
        return len(self._sums)

    def assign(self, embedding: np.ndarray) -> int:
        """The label (1-based) of the speaker of a turn with this unit embedding; updates the speaker."""
        if self._sums:
            sims = [float(_unit(s) @ embedding) for s in self._sums]
            best = int(np.argmax(sims))
            if sims[best] >= self.options.threshold or len(self._sums) >= self.options.max_speakers:
                self._sums[best] = self._sums[best] + embedding
                return best + 1
        self._sums.append(embedding.copy())
        return len(self._sums)


@dataclass(frozen=True)
class UtteranceSpeakers:
    speaker: int  # the final's speaker
    word_speakers: tuple[int, ...]  # one per word
    turns: tuple[tuple[int, int, int], ...]  # (speaker, start, end samples of the utterance audio)


def decide(clusters: SpeakerClusters, embeddings: np.ndarray, spans: np.ndarray,
           words: list[tuple[int, int]], length: int, speech: tuple[int, int] | None = None) -> UtteranceSpeakers:
    """Speakers of one final utterance: ``embeddings`` / ``spans`` from the speaker model over its
    audio (``length`` samples), ``words`` the words' ``(start, end)`` in samples of that audio,
    ``speech`` the VAD's ``[onset, end)`` of its speech in those samples (default: all of it)."""
    assert len(embeddings), "the speaker model gives at least one window of any audio"
    bounds = [w[0] for w in words[1:]] if len(words) > 1 else [int(s) for s in spans[1:, 0]]
    turns = split_turns(embeddings, spans, bounds, 0, length, clusters.options, speech)
    labelled = []
    for start, end in turns:
        mean = _mean_inside(embeddings, spans, start, end)
        if mean is None:  # shorter than a window: every window it overlaps
            overlap = (spans[:, 0] < end) & (spans[:, 1] > start)
            mean = _unit(embeddings[overlap].mean(axis=0))
        speaker = clusters.assign(mean)
        if labelled and labelled[-1][0] == speaker:  # split, but the same speaker both sides: one turn
            labelled[-1] = (speaker, labelled[-1][1], end)
        else:
            labelled.append((speaker, start, end))
    word_speakers = []
    for w_start, w_end in words:
        middle = (w_start + w_end) // 2
        word_speakers.append(next((s for s, a, b in labelled if a <= middle < b), labelled[-1][0]))
    spoken: dict[int, int] = {}
    for (w_start, w_end), s in zip(words, word_speakers):
        spoken[s] = spoken.get(s, 0) + max(1, w_end - w_start)
    speaker = max(spoken, key=spoken.get) if spoken else labelled[0][0]
    return UtteranceSpeakers(speaker, tuple(word_speakers), tuple(labelled))
