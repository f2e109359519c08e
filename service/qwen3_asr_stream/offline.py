"""Offline transcription of whole recordings (the CLI's ``transcribe`` and ``align``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .engine.aligner import MAX_ALIGN_SECONDS, AlignRequest, ForcedAligner
from .text.alignment import WordTime, clamp_word_times
from .audio.files import split_long_audio
from .checkpoint import LoadOptions, load_pretrained
from .engine.bias import DEFAULT_BOOST, TermBias, check_terms
from .engine.decoding import StopRules, greedy_generate
from .engine.text_layer import term_bias
from .audio.frontend import N_FFT, SAMPLE_RATE, batch_features
from .model.qwen3_asr import SpeechModel
from .text.prompts import asr_prompt_text
from .text.tokenizer import TextTokenizer
from .text.transcript import normalize_language, parse_output

MAX_ASR_SECONDS = 1200.0  # longest piece given to the ASR model at once
MIN_SAMPLES = N_FFT // 2 + 1  # the front end's STFT (centered, reflect-padded) needs more than half a window
SHORT_PAD_SECONDS = 0.5  # audio shorter than MIN_SAMPLES is zero-padded to this (the official rule for short pieces)


def padded_for_model(audio: np.ndarray) -> np.ndarray:
    """Audio the front end accepts: a piece under MIN_SAMPLES (but not empty) is zero-padded at the end."""
    if 0 < audio.shape[0] < MIN_SAMPLES:
        return np.pad(audio, (0, int(SHORT_PAD_SECONDS * SAMPLE_RATE) - audio.shape[0]))
    return audio


def words_in_recording(words: Sequence[WordTime], offset_samples: int, n_samples: int) -> list[WordTime]:
    """Word times of audio ``n_samples`` long starting ``offset_samples`` into a recording, in
    seconds from the recording's start, clamped to that audio (``clamp_word_times``)."""
    start_ms = offset_samples * 1000 // SAMPLE_RATE
    end_ms = (offset_samples + n_samples) * 1000 // SAMPLE_RATE
    return [WordTime(text, s / 1000, e / 1000) for text, s, e in clamp_word_times(words, start_ms, end_ms)]


def align_recording(aligner: ForcedAligner, audio: np.ndarray, text: str, language: str) -> list[WordTime]:
    """Word times of ``text`` in a whole 16 kHz recording (at most MAX_ALIGN_SECONDS), clamped to it."""
    if audio.shape[0] == 0:
        raise ValueError("the audio has no samples: there is nothing to align the text to")
    seconds = audio.shape[0] / SAMPLE_RATE
    if seconds > MAX_ALIGN_SECONDS:
        raise ValueError(f"the aligner takes at most {MAX_ALIGN_SECONDS:.0f} s of audio, got {seconds:.1f} s; "
                         "use `transcribe --aligner` for longer recordings")
    words = aligner.align([AlignRequest(padded_for_model(audio), text, language)])[0]
    return words_in_recording(words, 0, audio.shape[0])


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None  # None: the model detects it
    context: str = ""
    max_new_tokens: int = 512
    word_timestamps: bool = False
    batch_size: int = 32
    key_terms: tuple[str, ...] = ()  # steer decoding toward these (engine/bias.py), as streams do
    term_boost: float = DEFAULT_BOOST

    def __post_init__(self) -> None:
        check_terms(self.key_terms, self.term_boost)
        if self.language is not None:
            object.__setattr__(self, "language", normalize_language(self.language))
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class Transcription:
    language: str  # "" when unknown or silent; "A,B" when pieces differ
    text: str
    words: list[WordTime] = field(default_factory=list)


def merge_languages(languages: Sequence[str]) -> str:
    merged: list[str] = []
    for lang in languages:
        if lang and (not merged or merged[-1] != lang):
            merged.append(lang)
    return ",".join(merged)


class Transcriber:
    def __init__(self, model: SpeechModel, tokenizer: TextTokenizer, aligner: ForcedAligner | None = None) -> None:
        if model.is_aligner:
            raise ValueError("the transcription model is a forced-aligner checkpoint; pass an ASR checkpoint")
        self.model = model
        self.tokenizer = tokenizer
        self.aligner = aligner

    @classmethod
    def from_pretrained(cls, model: str, aligner: str | None = None, load: LoadOptions = LoadOptions()) -> "Transcriber":
        forced = ForcedAligner(*load_pretrained(aligner, load, "aligner")) if aligner is not None else None
        return cls(*load_pretrained(model, load), forced)

    def raw_outputs(self, audios: Sequence[np.ndarray], contexts: Sequence[str],
                    languages: Sequence[str | None], max_new_tokens: int, batch_size: int,
                    bias: TermBias | None = None) -> list[str]:
        """Decoded model output per audio (pieces under the model's limit), batched like the official code."""
        outputs: list[str] = []
        stop = StopRules(self.tokenizer.end_of_text_ids(), max_new_tokens)
        for start in range(0, len(audios), batch_size):
            waves = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in audios[start : start + batch_size]]
            features, frames = batch_features(waves)
            encoded = self.model.encode_audio([features[i, :, :n] for i, n in enumerate(frames)])
            prompts = [
                self.tokenizer.encode(asr_prompt_text(e.shape[0], contexts[start + i], languages[start + i]))
                for i, e in enumerate(encoded)
            ]
            for tokens in greedy_generate(self.model, prompts, encoded, stop, bias):
                outputs.append(self.tokenizer.decode(tokens))
        return outputs

    def transcribe(self, audios: Sequence[np.ndarray], options: TranscribeOptions = TranscribeOptions()) -> list[Transcription]:
        """Transcribe 16 kHz mono float32 recordings of any length."""
        if options.word_timestamps and self.aligner is None:
            raise ValueError("word timestamps need a forced aligner (--aligner)")
        max_seconds = MAX_ALIGN_SECONDS if options.word_timestamps else MAX_ASR_SECONDS
        # (recording, piece, its first sample in the recording, its samples before padding)
        pieces: list[tuple[int, np.ndarray, int, int]] = []
        for index, audio in enumerate(audios):
            if audio.shape[0] == 0:
                continue  # no audio: an empty result, as a stream without speech has
            cuts = split_long_audio(audio, max_seconds)
            for k, (piece, offset) in enumerate(cuts):
                first = round(offset * SAMPLE_RATE)
                last = round(cuts[k + 1][1] * SAMPLE_RATE) if k + 1 < len(cuts) else audio.shape[0]
                pieces.append((index, padded_for_model(piece), first, last - first))
        raw = self.raw_outputs(
            [p for _, p, _, _ in pieces], [options.context] * len(pieces), [options.language] * len(pieces),
            options.max_new_tokens, options.batch_size,
            term_bias(self.tokenizer, options.key_terms, options.term_boost),
        )
        parsed = [parse_output(r, options.language) for r in raw]

        words: list[list[WordTime]] = [[] for _ in pieces]
        if options.word_timestamps:
            assert self.aligner is not None
            todo = [i for i, p in enumerate(parsed) if p.text.strip()]
            for start in range(0, len(todo), options.batch_size):
                batch = todo[start : start + options.batch_size]
                aligned = self.aligner.align(
                    [AlignRequest(pieces[i][1], parsed[i].text, parsed[i].language) for i in batch]
                )
                for i, piece_words in zip(batch, aligned):
                    words[i] = words_in_recording(piece_words, pieces[i][2], pieces[i][3])

        results = []
        for index in range(len(audios)):
            mine = [i for i, (owner, _, _, _) in enumerate(pieces) if owner == index]
            results.append(
                Transcription(
                    language=merge_languages([parsed[i].language for i in mine]),
                    text="".join(parsed[i].text for i in mine),
                    words=[w for i in mine for w in words[i]],
                )
            )
        return results
