"""Word timestamps with Qwen3-ForcedAligner: one non-autoregressive pass per batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..text.alignment import WordTime, aligner_input_text, split_words, words_with_times
from .decoding import left_pad
from ..audio.frontend import batch_features
from ..model.qwen3_asr import SpeechModel
from ..text.tokenizer import AUDIO_PAD, TextTokenizer

MAX_ALIGN_SECONDS = 180.0  # the official input limit of the aligner


@dataclass(frozen=True)
class AlignRequest:
    audio: np.ndarray  # 16 kHz mono float32
    text: str
    language: str


class ForcedAligner:
    def __init__(self, model: SpeechModel, tokenizer: TextTokenizer) -> None:
        if not model.is_aligner:
            raise ValueError("ForcedAligner needs a Qwen3-ForcedAligner checkpoint, got an ASR model")
        self.model = model
        self.tokenizer = tokenizer
        dims = model.dims
        assert dims.timestamp_token_id is not None and dims.timestamp_segment_ms is not None
        self.timestamp_id = dims.timestamp_token_id
        self.segment_ms = dims.timestamp_segment_ms

    @torch.inference_mode()
    def align(self, requests: Sequence[AlignRequest]) -> list[list[WordTime]]:
        """Word start and end times in seconds, relative to each request's audio."""
        if not requests:
            return []
        word_lists = [split_words(r.text, r.language) for r in requests]
        waves = [torch.from_numpy(np.ascontiguousarray(r.audio, dtype=np.float32)) for r in requests]
        features, frames = batch_features(waves)
        mels = [features[i, :, :n] for i, n in enumerate(frames)]
        audio = self.model.encode_audio(mels)
        prompts = []
        for words, feats in zip(word_lists, audio):
            text = aligner_input_text(words).replace(AUDIO_PAD, AUDIO_PAD * feats.shape[0], 1)
            prompts.append(self.tokenizer.encode(text))
        ids, valid = left_pad(prompts, self.tokenizer.pad_id)
        ids, valid = ids.to(self.model.device), valid.to(self.model.device)
        cache = self.model.new_cache(len(prompts), ids.shape[1])
        logits = self.model(self.model.embed(ids, list(audio)), cache, valid, last_only=False)
        classes = logits.argmax(dim=-1)
        results = []
        for row, words in enumerate(word_lists):
            stamps = classes[row][ids[row] == self.timestamp_id].tolist()
            results.append(words_with_times(words, stamps, self.segment_ms))
        return results
