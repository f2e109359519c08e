"""The audio encoder: chunked convolutions, then a transformer with windowed attention.

Mel frames are cut into chunks of ``dims.chunk_frames`` (100 frames, 1 s). Each
chunk goes through three stride-2 convolutions on its own (13 tokens per full
chunk) and gets sinusoidal positions that restart in every chunk. Self-attention
is block diagonal over windows of ``dims.window_tokens`` (104 tokens, 8 s): no
token attends across a window boundary, so a completed window's output never
changes when later audio arrives. That is what lets the streaming engine encode
each completed window once.

The official transformers backend computes windowed attention only with
flash-attention; with its default ``sdpa`` or ``eager`` attention it passes no
mask, so every token attends to the whole audio. ``ENCODER_ATTENTION`` names both
behaviours: "windowed" (what the model was trained with, and what the official
flash-attention and vLLM paths compute) and "global" (the official CPU path).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import AudioEncoderDims, conv_output_length

ENCODER_ATTENTION = ("windowed", "global")


def sinusoid_positions(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """``(length, channels)`` float32: sines in the first half, cosines in the second."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2).float())
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class EncoderAttention(nn.Module):
    def __init__(self, dims: AudioEncoderDims) -> None:
        super().__init__()
        self.heads = dims.encoder_attention_heads
        self.head_dim = dims.head_dim
        d = dims.d_model
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x: ``(windows, tokens, d_model)``; key_mask: ``(windows, tokens)`` bool, True = real token."""
        w, t, _ = x.shape
        shape = (w, t, self.heads, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(w, t, -1))


class EncoderLayer(nn.Module):
    def __init__(self, dims: AudioEncoderDims) -> None:
        super().__init__()
        self.self_attn = EncoderAttention(dims)
        self.self_attn_layer_norm = nn.LayerNorm(dims.d_model)
        self.fc1 = nn.Linear(dims.d_model, dims.encoder_ffn_dim)
        self.fc2 = nn.Linear(dims.encoder_ffn_dim, dims.d_model)
        self.final_layer_norm = nn.LayerNorm(dims.d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_mask)
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        if x.dtype == torch.float16:
            limit = torch.finfo(torch.float16).max - 1000
            x = x.clamp(-limit, limit)
        return x


class AudioEncoder(nn.Module):
    """Parameter names follow the published checkpoints (``thinker.audio_tower.*``)."""

    def __init__(self, dims: AudioEncoderDims, attention: str = "windowed") -> None:
        super().__init__()
        if attention not in ENCODER_ATTENTION:
            raise ValueError(f"encoder attention must be one of {ENCODER_ATTENTION}, got {attention!r}")
        self.dims = dims
        self.attention = attention
        c = dims.downsample_hidden_size
        self.conv2d1 = nn.Conv2d(1, c, 3, 2, padding=1)
        self.conv2d2 = nn.Conv2d(c, c, 3, 2, padding=1)
        self.conv2d3 = nn.Conv2d(c, c, 3, 2, padding=1)
        self.conv_out = nn.Linear(dims.conv_out_features, dims.d_model, bias=False)
        self.layers = nn.ModuleList(EncoderLayer(dims) for _ in range(dims.encoder_layers))
        self.ln_post = nn.LayerNorm(dims.d_model)
        self.proj1 = nn.Linear(dims.d_model, dims.d_model)
        self.proj2 = nn.Linear(dims.d_model, dims.output_dim)
        self.register_buffer(
            "positional_embedding", sinusoid_positions(dims.max_source_positions, dims.d_model), persistent=False
        )

    def embed_chunks(self, mel: torch.Tensor, pad_to: int) -> list[torch.Tensor]:
        """Convolution front of every chunk.

        Args:
            mel: ``(n_mels, frames)``.
            pad_to: frames every chunk is zero-padded to before the convolutions (the
                official code pads to the longest chunk of the whole audio, which changes
                a partial chunk's last tokens; see :meth:`forward`).
        Returns:
            one ``(tokens, d_model)`` tensor per chunk.
        """
        dims = self.dims
        frames = mel.shape[-1]
        starts = list(range(0, frames, dims.chunk_frames))
        lengths = [min(dims.chunk_frames, frames - s) for s in starts]
        batch = mel.new_zeros(len(starts), 1, mel.shape[0], pad_to)
        for i, (s, n) in enumerate(zip(starts, lengths)):
            batch[i, 0, :, :n] = mel[:, s : s + n]
        outputs = []
        for piece in batch.split(dims.conv_chunksize, dim=0):
            h = F.gelu(self.conv2d1(piece))
            h = F.gelu(self.conv2d2(h))
            outputs.append(F.gelu(self.conv2d3(h)))
        h = torch.cat(outputs, dim=0)
        b, c, f, t = h.shape
        h = self.conv_out(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
        h = h + self.positional_embedding[:t].to(h.dtype)
        return [h[i, : conv_output_length(n)] for i, n in enumerate(lengths)]

    def encode_windows(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Transformer part over attention windows, batched: whole windows in one batch, shorter ones
        (a streaming utterance's open window, an audio's last) in another, so that a short window is
        not padded to a whole one.

        Args:
            windows: ``(tokens_i, d_model)`` per window, ``tokens_i <= dims.window_tokens``.
        Returns:
            ``(tokens_i, output_dim)`` per window.
        """
        whole = [i for i, w in enumerate(windows) if w.shape[0] == self.dims.window_tokens]
        short = [i for i, w in enumerate(windows) if w.shape[0] != self.dims.window_tokens]
        if whole and short:
            out: list[torch.Tensor | None] = [None] * len(windows)
            for group in (whole, short):
                for i, encoded in zip(group, self._encode_batch([windows[i] for i in group])):
                    out[i] = encoded
            return out
        return self._encode_batch(windows)

    def _encode_batch(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Transformer part over windows padded to the longest (padding masked out)."""
        longest = max(w.shape[0] for w in windows)
        x = windows[0].new_zeros(len(windows), longest, self.dims.d_model)
        key_mask = torch.zeros(len(windows), longest, dtype=torch.bool, device=x.device)
        for i, w in enumerate(windows):
            x[i, : w.shape[0]] = w
            key_mask[i, : w.shape[0]] = True
        mask = None if bool(key_mask.all()) else key_mask
        for layer in self.layers:
            x = layer(x, mask)
        x = self.proj2(F.gelu(self.proj1(self.ln_post(x))))
        return [x[i, : w.shape[0]] for i, w in enumerate(windows)]

    def split_windows(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        if self.attention == "global":
            return [tokens]
        return list(tokens.split(self.dims.window_tokens, dim=0))

    def forward(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encode whole audios.

        Args:
            mels: ``(n_mels, frames_i)`` per audio.
        Returns:
            ``(output_length(frames_i), output_dim)`` per audio.
        """
        windows: list[torch.Tensor] = []
        counts: list[int] = []
        for mel in mels:
            tokens = torch.cat(self.embed_chunks(mel, self.chunk_padding(mel.shape[-1])), dim=0)
            parts = self.split_windows(tokens)
            windows.extend(parts)
            counts.append(len(parts))
        encoded = self.encode_windows(windows)
        out, i = [], 0
        for n in counts:
            out.append(torch.cat(encoded[i : i + n], dim=0))
            i += n
        return out

    def chunk_padding(self, frames: int) -> int:
        """Frames each chunk is padded to: a full chunk once the audio has one, else its own length."""
        return self.dims.chunk_frames if frames >= self.dims.chunk_frames else frames
