"""The Qwen3 text decoder with an explicit KV cache.

The checkpoints use interleaved multimodal RoPE, but for audio-and-text input the
three position streams are identical, so it reduces to ordinary 1-D RoPE.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import TextDecoderDims
from .kv_cache import KVCache, RowCache

# attend(layer, q, k, v) -> (batch, heads, n, head_dim): stores k, v in a cache and attends.
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, dims: TextDecoderDims) -> None:
        super().__init__()
        exponents = torch.arange(0, dims.head_dim, 2, dtype=torch.int64).float() / dims.head_dim
        self.register_buffer("inv_freq", 1.0 / (dims.rope_theta**exponents), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: ``(batch, n)`` -> cos, sin ``(batch, 1, n, head_dim)``, computed in float32."""
        freqs = positions[..., None].float() * self.inv_freq.float()
        angles = torch.cat([freqs, freqs], dim=-1)[:, None]
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class DecoderAttention(nn.Module):
    def __init__(self, dims: TextDecoderDims, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.heads = dims.num_attention_heads
        self.kv_heads = dims.num_key_value_heads
        self.head_dim = dims.head_dim
        self.q_proj = nn.Linear(dims.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dims.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dims.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, dims.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, dims.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, dims.rms_norm_eps)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], attend: Attend) -> torch.Tensor:
        """x: ``(batch, n, hidden)``; ``attend`` stores the new keys/values and attends."""
        b, n, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, n, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, n, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rotary
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = attend(self.layer, q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, dims: TextDecoderDims) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dims.hidden_size, dims.intermediate_size, bias=False)
        self.up_proj = nn.Linear(dims.hidden_size, dims.intermediate_size, bias=False)
        self.down_proj = nn.Linear(dims.intermediate_size, dims.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, dims: TextDecoderDims, layer: int) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(dims, layer)
        self.mlp = MLP(dims)
        self.input_layernorm = RMSNorm(dims.hidden_size, dims.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(dims.hidden_size, dims.rms_norm_eps)

    def forward(self, x, rotary, attend: Attend):
        x = x + self.self_attn(self.input_layernorm(x), rotary, attend)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextDecoder(nn.Module):
    """Parameter names follow the published checkpoints (``thinker.model.*``)."""

    def __init__(self, dims: TextDecoderDims) -> None:
        super().__init__()
        self.dims = dims
        self.embed_tokens = nn.Embedding(dims.vocab_size, dims.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(dims, i) for i in range(dims.num_hidden_layers))
        self.norm = RMSNorm(dims.hidden_size, dims.rms_norm_eps)
        self.rotary = RotaryEmbedding(dims)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        weight = self.embed_tokens.weight
        return KVCache(
            self.dims.num_hidden_layers, batch, self.dims.num_key_value_heads, self.dims.head_dim,
            capacity, weight.dtype, weight.device,
        )

    def new_row_cache(self, capacity: int) -> RowCache:
        weight = self.embed_tokens.weight
        return RowCache(self.dims.num_hidden_layers, self.dims.num_key_value_heads, self.dims.head_dim,
                        capacity, weight.dtype, weight.device)

    def forward(self, embeds: torch.Tensor, cache: KVCache, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``n`` new positions of every row and append them to ``cache``.

        Args:
            embeds: ``(batch, n, hidden)`` input embeddings.
            cache: holds ``cache.cursor`` earlier slots; the new ones are written after them.
            valid: ``(batch, n)`` bool, False for left padding (default all True). Each
                valid token takes the row's next rotary position.
        Returns:
            ``(batch, n, hidden)`` hidden states after the final norm.
        """
        b, n, _ = embeds.shape
        device = embeds.device
        if valid is None:
            valid = torch.ones(b, n, dtype=torch.bool, device=device)
        cache.reserve(n)
        start = cache.cursor
        positions = cache.next_position[:, None] + valid.long().cumsum(dim=1) - 1
        positions = positions.clamp(min=0)
        rotary = self.rotary(positions, embeds.dtype)

        keys_valid = torch.cat([cache.valid[:, :start], valid], dim=1)  # (batch, start + n)
        query_slot = torch.arange(start, start + n, device=device)
        key_slot = torch.arange(start + n, device=device)
        causal = key_slot[None, :] <= query_slot[:, None]  # (n, start + n)
        mask = causal[None] & keys_valid[:, None, :]
        # A padding query sees only itself, so no row of the softmax is empty (which
        # would put NaN into the cache); its slot is invalid for everyone else.
        mask = mask | (key_slot[None, None, :] == query_slot[None, :, None])
        attend = _batch_attend(cache, mask[:, None], self.dims)
        x = embeds
        for layer in self.layers:
            x = layer(x, rotary, attend)
        cache.advance(valid)
        return self.norm(x)

    def forward_rows(self, embeds: torch.Tensor, rows: list[RowCache], lengths: list[int]) -> torch.Tensor:
        """Run new positions of several sequences, each on its own cache (no copy, no padding in it).

        Args:
            embeds: ``(batch, n, hidden)``; row ``j`` holds ``lengths[j]`` real positions
                first (right padding after them is computed but neither stored nor attended).
            rows: one cache per row; row ``j``'s positions go to slots ``rows[j].length`` on.
        Returns:
            ``(batch, n, hidden)``; positions past ``lengths[j]`` hold garbage.
        """
        b, n, _ = embeds.shape
        starts = [r.length for r in rows]
        for r, start, length in zip(rows, starts, lengths):
            if start + length > r.capacity:
                raise ValueError(f"a row cache of {r.capacity} slots cannot take {start} + {length} positions")
        positions = torch.tensor(starts, device=embeds.device)[:, None] + torch.arange(n, device=embeds.device)
        rotary = self.rotary(positions, embeds.dtype)
        attend = _row_attend(rows, starts, lengths, self.dims)
        x = embeds
        for layer in self.layers:
            x = layer(x, rotary, attend)
        for r, length in zip(rows, lengths):
            r.length += length
        return self.norm(x)

    def step_static(self, embeds: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One position of every row with fixed shapes (capturable in a CUDA graph).

        Writes at ``cache.static_slot`` (a device tensor) and attends over the whole
        capacity under a mask built from device tensors only; the caller advances the
        cache's bookkeeping afterwards.

        Args:
            embeds: ``(batch, 1, hidden)``.
        Returns:
            ``(batch, 1, hidden)``.
        """
        assert cache.static_slot is not None
        slot = cache.static_slot
        rotary = self.rotary(cache.next_position[:, None], embeds.dtype)
        key_slot = torch.arange(cache.capacity, device=embeds.device)
        visible = (cache.valid | (key_slot == slot)[None, :]) & (key_slot <= slot)[None, :]
        attend = _batch_attend(cache, visible[:, None, None, :], self.dims)
        x = embeds
        for layer in self.layers:
            x = layer(x, rotary, attend)
        return self.norm(x)


def _batch_attend(cache: KVCache, mask: torch.Tensor, dims: TextDecoderDims) -> Attend:
    """Attention over a batch cache under ``mask`` ``(batch, 1, n, slots)``."""
    gqa = dims.num_key_value_heads != dims.num_attention_heads

    def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        keys, values = cache.write(layer, k, v)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=gqa)

    return attend


def _row_attend(rows: list[RowCache], starts: list[int], lengths: list[int], dims: TextDecoderDims) -> Attend:
    """Attention of each row over views of its own cache (causal within the new positions)."""
    gqa = dims.num_key_value_heads != dims.num_attention_heads
    masks: list[torch.Tensor | None] = []
    for r, start, n in zip(rows, starts, lengths):
        if start == 0 or n <= 1:
            masks.append(None)  # is_causal (square) or a single query that sees everything
        else:
            key = torch.arange(start + n, device=r.storage.device)
            query = torch.arange(start, start + n, device=r.storage.device)
            masks.append(key[None, :] <= query[:, None])

    def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(q)
        for j, (r, start, n) in enumerate(zip(rows, starts, lengths)):
            if n == 0:
                continue
            end = start + n
            keys, values = r.keys[layer], r.values[layer]
            keys[:, :, start:end] = k[j : j + 1, :, :n]
            values[:, :, start:end] = v[j : j + 1, :, :n]
            out[j : j + 1, :, :n] = F.scaled_dot_product_attention(
                q[j : j + 1, :, :n], keys[:, :, :end], values[:, :, :end], attn_mask=masks[j],
                is_causal=start == 0 and n > 1, enable_gqa=gqa)
        return out

    return attend
