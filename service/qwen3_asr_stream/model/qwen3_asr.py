"""Qwen3-ASR and Qwen3-ForcedAligner: audio encoder + text decoder + output head.

The module tree mirrors the published weight names: ``thinker.audio_tower.*``,
``thinker.model.*`` and ``thinker.lm_head.*``. This module does no I/O; see
``checkpoint.py`` for loading.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelDims, ModelKind
from .decoder import TextDecoder
from .encoder import AudioEncoder
from .kv_cache import KVCache, RowCache


class Thinker(nn.Module):
    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.audio_tower = AudioEncoder(dims.audio)
        self.model = TextDecoder(dims.text)
        self.lm_head = nn.Linear(dims.text.hidden_size, dims.head_size, bias=False)


class SpeechModel(nn.Module):
    """Both published variants: ``dims.kind`` says whether the head is the vocabulary
    (ASR, greedy decoding) or the aligner's time classes (one non-autoregressive pass)."""

    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.dims = dims
        self.thinker = Thinker(dims)
        self.quantized = False

    @property
    def is_aligner(self) -> bool:
        return self.dims.kind is ModelKind.ALIGNER

    @property
    def encoder(self) -> AudioEncoder:
        return self.thinker.audio_tower

    @property
    def decoder(self) -> TextDecoder:
        return self.thinker.model

    @property
    def device(self) -> torch.device:
        return self.thinker.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of activations (the embeddings'; int8 layers take and give float32)."""
        return self.thinker.model.embed_tokens.weight.dtype

    def tie_weights(self) -> None:
        if self.dims.text.tie_word_embeddings and not self.quantized:
            self.thinker.lm_head.weight = self.thinker.model.embed_tokens.weight

    def encode_audio(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """``(n_mels, frames_i)`` float32 per audio -> ``(tokens_i, hidden)`` in the model dtype."""
        return self.encoder([m.to(self.device, self.dtype) for m in mels])

    def embed(self, input_ids: torch.Tensor, audio: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Token embeddings with each row's audio placeholders replaced by its audio tokens.

        Args:
            input_ids: ``(batch, n)``.
            audio: per row, ``(k, hidden)`` where the row holds exactly ``k`` audio placeholders
                (the first ``k`` of the utterance's audio tokens are not needed: any
                contiguous part may be given, matching the placeholders present).
        Returns:
            ``(batch, n, hidden)``.
        """
        embeds = self.decoder.embed_tokens(input_ids)
        if audio is None:
            return embeds
        placeholders = input_ids == self.dims.audio_token_id
        for row, features in enumerate(audio):
            count = int(placeholders[row].sum())
            if features is None:
                assert count == 0, "audio placeholders without audio"
                continue
            if features.shape[0] != count:
                raise ValueError(f"row {row} has {count} audio placeholders but {features.shape[0]} audio tokens")
            embeds[row, placeholders[row]] = features.to(embeds.dtype)
        return embeds

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        return self.decoder.new_cache(batch, capacity)

    def new_row_cache(self, capacity: int) -> RowCache:
        return self.decoder.new_row_cache(capacity)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., hidden)`` -> ``(..., head_size)`` logits."""
        return self.thinker.lm_head(hidden)

    def forward(self, embeds: torch.Tensor, cache: KVCache, valid: torch.Tensor | None = None,
                last_only: bool = True) -> torch.Tensor:
        """Decoder pass over new positions and the head's logits.

        Returns ``(batch, head_size)`` for the last position when ``last_only``, else
        ``(batch, n, head_size)``.
        """
        hidden = self.decoder(embeds, cache, valid)
        if last_only:
            hidden = hidden[:, -1]
        return self.thinker.lm_head(hidden)
