"""The weights of a random-weight checkpoint: the tensor plan and the safetensors files.

``tensor_plan`` lists every tensor of the published files (names start with
``thinker.`` exactly as the official modules name their parameters; with tied
embeddings, the ASR models, there is no ``thinker.lm_head.weight``).  ``write_weights``
writes them as ``model.safetensors`` or as ``model-0000k-of-0000N.safetensors`` shards
plus ``model.safetensors.index.json``.

Initialisation: linear and conv weights normal(0, 1/sqrt(fan_in)), biases normal(0,
0.02), norm weights 1 + normal(0, 0.05), LayerNorm biases normal(0, 0.02), embeddings
normal(0, 0.1); with these a tiny random model's greedy output varies from token to
token and with the audio instead of repeating one token.

Tensors are generated one at a time from a generator seeded by (seed, tensor name)
and streamed straight into the safetensors files, so a full-size write needs little
memory, and the same seed gives the same tensors however the files are sharded.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import struct
from dataclasses import dataclass
from typing import Iterator

from .specs import CheckpointSpec, build_config

__all__ = ["DTYPE_TAGS", "tensor_plan", "write_weights"]

# --------------------------------------------------------------------------------------
# Tensor plan and initialisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    init: str  # "linear" | "bias" | "norm" | "norm_bias" | "embed" | "conv"
    fan_in: int = 1


def tensor_plan(spec: CheckpointSpec) -> list[_Tensor]:
    """Every tensor of the published files, in the order they are written."""
    cfg = build_config(spec)
    a = cfg["thinker_config"]["audio_config"]
    t = cfg["thinker_config"]["text_config"]
    out: list[_Tensor] = []

    def linear(prefix, n_out, n_in, bias):
        out.append(_Tensor(prefix + ".weight", (n_out, n_in), "linear", n_in))
        if bias:
            out.append(_Tensor(prefix + ".bias", (n_out,), "bias", n_in))

    def layer_norm(prefix, n):
        out.append(_Tensor(prefix + ".weight", (n,), "norm"))
        out.append(_Tensor(prefix + ".bias", (n,), "norm_bias"))

    # Audio tower.
    p = "thinker.audio_tower."
    d, ds, mel = a["d_model"], a["downsample_hidden_size"], a["num_mel_bins"]
    for i, c_in in ((1, 1), (2, ds), (3, ds)):
        out.append(_Tensor(f"{p}conv2d{i}.weight", (ds, c_in, 3, 3), "conv", c_in * 9))
        out.append(_Tensor(f"{p}conv2d{i}.bias", (ds,), "bias", c_in * 9))
    freq = (((mel + 1) // 2 + 1) // 2 + 1) // 2
    linear(p + "conv_out", d, ds * freq, bias=False)
    for i in range(a["encoder_layers"]):
        lp = f"{p}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(lp + "self_attn." + proj, d, d, bias=True)
        layer_norm(lp + "self_attn_layer_norm", d)
        linear(lp + "fc1", a["encoder_ffn_dim"], d, bias=True)
        linear(lp + "fc2", d, a["encoder_ffn_dim"], bias=True)
        layer_norm(lp + "final_layer_norm", d)
    layer_norm(p + "ln_post", d)
    linear(p + "proj1", d, d, bias=True)
    linear(p + "proj2", a["output_dim"], d, bias=True)

    # Text decoder.
    p = "thinker.model."
    h, hd = t["hidden_size"], t["head_dim"]
    nq, nkv, ffn = t["num_attention_heads"], t["num_key_value_heads"], t["intermediate_size"]
    bias = bool(t["attention_bias"])
    out.append(_Tensor(p + "embed_tokens.weight", (t["vocab_size"], h), "embed"))
    for i in range(t["num_hidden_layers"]):
        lp = f"{p}layers.{i}."
        linear(lp + "self_attn.q_proj", nq * hd, h, bias)
        linear(lp + "self_attn.k_proj", nkv * hd, h, bias)
        linear(lp + "self_attn.v_proj", nkv * hd, h, bias)
        linear(lp + "self_attn.o_proj", h, nq * hd, bias)
        out.append(_Tensor(lp + "self_attn.q_norm.weight", (hd,), "norm"))
        out.append(_Tensor(lp + "self_attn.k_norm.weight", (hd,), "norm"))
        linear(lp + "mlp.gate_proj", ffn, h, bias=False)
        linear(lp + "mlp.up_proj", ffn, h, bias=False)
        linear(lp + "mlp.down_proj", h, ffn, bias=False)
        out.append(_Tensor(lp + "input_layernorm.weight", (h,), "norm"))
        out.append(_Tensor(lp + "post_attention_layernorm.weight", (h,), "norm"))
    out.append(_Tensor(p + "norm.weight", (h,), "norm"))
    if spec.kind == "aligner":
        out.append(_Tensor("thinker.lm_head.weight", (int(spec.classify_num), h), "linear", h))
    elif not t["tie_word_embeddings"]:
        out.append(_Tensor("thinker.lm_head.weight", (t["vocab_size"], h), "linear", h))
    return out


DTYPE_TAGS = {"float32": ("F32", 4), "bfloat16": ("BF16", 2), "float16": ("F16", 2)}


def _tensor_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _iter_chunks(spec: _Tensor, seed: int, torch_dtype, max_elems: int = 1 << 24) -> Iterator:
    """The tensor's values in row-major chunks of whole rows.

    The chunking depends only on the tensor's shape, so a tensor's values depend only on
    (seed, name, shape), not on which file it lands in.
    """
    import torch

    gen = torch.Generator().manual_seed(_tensor_seed(seed, spec.name))
    rows = spec.shape[0]
    per_row = math.prod(spec.shape[1:]) if len(spec.shape) > 1 else 1
    step = max(1, max_elems // max(per_row, 1))
    if spec.init in ("linear", "conv"):
        std = 1.0 / math.sqrt(spec.fan_in)
    elif spec.init == "embed":
        # Small next to what the layers add to the residual stream: with embeddings as
        # large as the layer outputs, a tied head mostly scores the current token's own
        # embedding and greedy decoding repeats the last prompt token forever.
        std = 0.1
    elif spec.init == "bias":
        std = 0.02
    elif spec.init == "norm":
        std = 0.05
    elif spec.init == "norm_bias":
        std = 0.02
    else:  # pragma: no cover - plan and init kinds are defined together
        raise AssertionError(spec.init)
    for start in range(0, rows, step):
        n = min(step, rows - start)
        x = torch.randn((n, *spec.shape[1:]), generator=gen, dtype=torch.float32)
        x.mul_(std)
        if spec.init == "norm":
            x.add_(1.0)
        yield x.to(torch_dtype).contiguous()


def _write_safetensors(path: pathlib.Path, tensors: list[_Tensor], seed: int, dtype: str) -> int:
    """Stream ``tensors`` into one safetensors file; returns the data byte count."""
    import torch

    tag, width = DTYPE_TAGS[dtype]
    torch_dtype = getattr(torch, dtype)
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        size = math.prod(t.shape) * width
        header[t.name] = {"dtype": tag, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors:
            for chunk in _iter_chunks(t, seed, torch_dtype):
                f.write(chunk.view(torch.uint8).numpy().tobytes())
    tmp.replace(path)
    return offset


def _shard(tensors: list[_Tensor], width: int, max_bytes: int | None) -> list[list[_Tensor]]:
    if not max_bytes:
        return [tensors]
    shards: list[list[_Tensor]] = [[]]
    used = 0
    for t in tensors:
        size = math.prod(t.shape) * width
        if shards[-1] and used + size > max_bytes:
            shards.append([])
            used = 0
        shards[-1].append(t)
        used += size
    return shards


def write_weights(out: pathlib.Path, spec: CheckpointSpec, seed: int, dtype: str, max_shard_bytes: int | None):
    plan = tensor_plan(spec)
    width = DTYPE_TAGS[dtype][1]
    shards = _shard(plan, width, max_shard_bytes)
    for stale in list(out.glob("model*.safetensors")) + list(out.glob("model.safetensors.index.json")):
        stale.unlink()
    if len(shards) == 1:
        _write_safetensors(out / "model.safetensors", plan, seed, dtype)
        return
    n = len(shards)
    weight_map: dict[str, str] = {}
    total = 0
    for k, shard in enumerate(shards, start=1):
        name = f"model-{k:05d}-of-{n:05d}.safetensors"
        total += _write_safetensors(out / name, shard, seed, dtype)
        weight_map.update({t.name: name for t in shard})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
