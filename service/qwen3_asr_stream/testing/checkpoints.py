"""Random-weight Qwen3-ASR / Qwen3-ForcedAligner checkpoints in the published layout.

No real weights can be downloaded where the tests run, so this module writes a
folder that looks exactly like ``Qwen/Qwen3-ASR-0.6B`` (or 1.7B, or
``Qwen/Qwen3-ForcedAligner-0.6B``) on the Hugging Face hub, with random weights:

* ``config.json``: ``model_type: qwen3_asr``, every size under ``thinker_config``
  (``audio_config`` and ``text_config`` with every field written out, so nothing
  relies on the constructor defaults of the official configuration classes, which
  are not the released sizes);
* ``model.safetensors`` or ``model-0000k-of-0000N.safetensors`` shards plus
  ``model.safetensors.index.json``; tensor names start with ``thinker.`` exactly as
  the official modules name their parameters; with tied embeddings (the ASR models)
  there is no ``thinker.lm_head.weight`` in the files;
* a small byte-level BPE tokenizer in the Qwen2 layout (``vocab.json``,
  ``merges.txt``, ``tokenizer_config.json``, no ``tokenizer.json``) whose vocabulary
  covers every id 0..151642, with the special tokens at their published ids;
* ``chat_template.json`` (the processor's chat template), ``preprocessor_config.json``
  (Whisper feature extractor) and ``generation_config.json`` (greedy).

Initialisation: linear and conv weights normal(0, 1/sqrt(fan_in)), biases normal(0,
0.02), norm weights 1 + normal(0, 0.05), LayerNorm biases normal(0, 0.02), embeddings
normal(0, 0.1); with these a tiny random model's greedy output varies from token to
token and with the audio instead of repeating one token.

Tensors are generated one at a time from a generator seeded by (seed, tensor name)
and streamed straight into the safetensors files, so a full-size write needs little
memory, and the same seed gives the same tensors however the files are sharded.

Command line::

    python -m qwen3_asr_stream.testing.checkpoints --preset tiny-asr --out DIR \
        [--dtype float32|bfloat16] [--seed N] [--max-shard-mb N]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import pathlib
import random
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

from ..tokenizer import QWEN2_SPLIT_PATTERN
from ..transcript import SUPPORTED_LANGUAGES as _SUPPORTED_LANGUAGES

__all__ = [
    "CheckpointSpec",
    "write_checkpoint",
    "build_config",
    "build_tokenizer_files",
    "tensor_plan",
    "TINY_ASR",
    "TINY_ASR_ALT",
    "TINY_ALIGNER",
    "ASR_0_6B",
    "ASR_1_7B",
    "ALIGNER_0_6B",
    "PRESETS",
    "SUPPORTED_LANGUAGES",
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "FIRST_SPECIAL_ID",
]

# --------------------------------------------------------------------------------------
# Published constants
# --------------------------------------------------------------------------------------

#: The 30 language names the official wrapper accepts (re-exported for the config's ``support_languages``).
SUPPORTED_LANGUAGES = _SUPPORTED_LANGUAGES

#: Ids below this are ordinary byte-level BPE tokens; the added tokens start here.
FIRST_SPECIAL_ID = 151643

ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
AUDIO_START_ID = 151669
AUDIO_END_ID = 151670
NON_SPEECH_ID = 151675
AUDIO_PAD_ID = 151676
ASR_TEXT_ID = 151704
TIMESTAMP_ID = 151705

ASR_VOCAB_SIZE = 151936
ALIGNER_VOCAB_SIZE = 152064


def _special_token_table() -> tuple[tuple[int, str, bool], ...]:
    """(id, content, special) for every added token 151643..151705, Qwen2/Qwen3 order."""
    names = [
        ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
        ("<|object_ref_start|>", True), ("<|object_ref_end|>", True),
        ("<|box_start|>", True), ("<|box_end|>", True),
        ("<|quad_start|>", True), ("<|quad_end|>", True),
        ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
        ("<|image_pad|>", True), ("<|video_pad|>", True),
        # Qwen marks the tool / fill-in-the-middle / think tokens as not special, so
        # they survive skip_special_tokens=True.
        ("<tool_call>", False), ("</tool_call>", False),
        ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
        ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
        ("<tool_response>", False), ("</tool_response>", False),
        ("<think>", False), ("</think>", False),
        ("<|audio_start|>", True), ("<|audio_end|>", True),
        ("<tts_pad>", True), ("<tts_text_bos>", True), ("<tts_text_eod>", True),
        ("<tts_text_bos_single>", True),
        # The transcript markers must survive batch_decode(skip_special_tokens=True):
        # the official parser splits the raw output on "<asr_text>".
        ("<non_speech>", False),
        ("<|audio_pad|>", True),
    ]
    names += [(f"<blank{i}>", True) for i in range(1, 28)]
    names += [("<asr_text>", False), ("<timestamp>", False)]
    table = tuple((FIRST_SPECIAL_ID + i, content, special) for i, (content, special) in enumerate(names))
    assert table[-1][0] == TIMESTAMP_ID, table[-1]
    return table


#: (id, content, special) of every added token.
SPECIAL_TOKENS: tuple[tuple[int, str, bool], ...] = _special_token_table()
_SPECIAL_BY_ID = {i: c for i, c, _ in SPECIAL_TOKENS}
assert _SPECIAL_BY_ID[IM_START_ID] == "<|im_start|>"
assert _SPECIAL_BY_ID[AUDIO_START_ID] == "<|audio_start|>"
assert _SPECIAL_BY_ID[AUDIO_END_ID] == "<|audio_end|>"
assert _SPECIAL_BY_ID[NON_SPEECH_ID] == "<non_speech>"
assert _SPECIAL_BY_ID[AUDIO_PAD_ID] == "<|audio_pad|>"
assert _SPECIAL_BY_ID[ASR_TEXT_ID] == "<asr_text>"

#: Chat template (Jinja) of the processor.  For a system message holding the context and
#: a user message holding one audio item it renders
#: ``<|im_start|>system\n{ctx}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|>``
#: ``<|audio_end|><|im_end|>\n<|im_start|>assistant\n``.  Without a system message an
#: empty one is emitted, so the prompt always has the same shape.
CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] is not none -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part is string -%}"
    "{{- part -}}"
    "{%- elif part.get('type') == 'audio' or 'audio' in part or 'audio_url' in part -%}"
    "{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
    "{%- elif part.get('type') == 'text' or 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

TRANSFORMERS_VERSION = "4.57.6"

# --------------------------------------------------------------------------------------
# Specs and presets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointSpec:
    """What to write.

    ``audio`` and ``text`` use the published ``audio_config`` / ``text_config`` field
    names; fields left out get the released values (n_window 50, n_window_infer 800,
    rope_theta 1e6, ...), never the official constructor defaults.  ``kind`` is
    ``"asr"`` or ``"aligner"``; ``classify_num`` is the aligner head's class count.
    """

    kind: str
    audio: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)
    classify_num: int = 5000


_AUDIO_FIXED = {
    "num_mel_bins": 128,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_function": "gelu",
    "activation_dropout": 0.0,
    "scale_embedding": False,
    "initializer_range": 0.02,
    "max_source_positions": 1500,
    "n_window": 50,
    "n_window_infer": 800,
    "conv_chunksize": 500,
    "downsample_hidden_size": 480,
}
_AUDIO_SIZE_KEYS = ("encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model", "output_dim")

_TEXT_FIXED = {
    "hidden_act": "silu",
    "max_position_embeddings": 65536,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "rope_theta": 1000000.0,
    "attention_bias": False,
    "attention_dropout": 0.0,
}
_TEXT_SIZE_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim",
)


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (t, h, w) like the released [24, 20, 20]."""
    half = head_dim // 2
    h = w = (half * 20) // 64
    return [half - h - w, h, w]


def _audio(layers, d_model, heads, ffn, output_dim, downsample=480) -> dict:
    return {
        "encoder_layers": layers, "d_model": d_model, "encoder_attention_heads": heads,
        "encoder_ffn_dim": ffn, "output_dim": output_dim, "downsample_hidden_size": downsample,
    }


def _text(vocab, hidden, ffn, layers, heads, kv_heads, head_dim) -> dict:
    return {
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": ffn,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim,
    }


TINY_ASR = CheckpointSpec(
    kind="asr",
    audio=_audio(layers=2, d_model=32, heads=4, ffn=64, output_dim=64, downsample=8),
    text=_text(ASR_VOCAB_SIZE, hidden=64, ffn=128, layers=2, heads=4, kv_heads=2, head_dim=16),
)
TINY_ASR_ALT = CheckpointSpec(
    kind="asr",
    audio=_audio(layers=3, d_model=48, heads=2, ffn=96, output_dim=64, downsample=16),
    text=_text(ASR_VOCAB_SIZE, hidden=64, ffn=96, layers=3, heads=8, kv_heads=8, head_dim=8),
)
TINY_ALIGNER = CheckpointSpec(
    kind="aligner",
    audio=_audio(layers=2, d_model=32, heads=4, ffn=64, output_dim=64, downsample=8),
    text=_text(ALIGNER_VOCAB_SIZE, hidden=64, ffn=128, layers=2, heads=4, kv_heads=2, head_dim=16),
)
ASR_0_6B = CheckpointSpec(
    kind="asr",
    audio=_audio(layers=18, d_model=896, heads=14, ffn=3584, output_dim=1024),
    text=_text(ASR_VOCAB_SIZE, hidden=1024, ffn=3072, layers=28, heads=16, kv_heads=8, head_dim=128),
)
ASR_1_7B = CheckpointSpec(
    kind="asr",
    audio=_audio(layers=24, d_model=1024, heads=16, ffn=4096, output_dim=2048),
    text=_text(ASR_VOCAB_SIZE, hidden=2048, ffn=6144, layers=28, heads=16, kv_heads=8, head_dim=128),
)
ALIGNER_0_6B = CheckpointSpec(
    kind="aligner",
    audio=_audio(layers=24, d_model=1024, heads=16, ffn=4096, output_dim=1024),
    text=_text(ALIGNER_VOCAB_SIZE, hidden=1024, ffn=3072, layers=28, heads=16, kv_heads=8, head_dim=128),
)

PRESETS: dict[str, CheckpointSpec] = {
    "tiny-asr": TINY_ASR,
    "tiny-asr-alt": TINY_ASR_ALT,
    "tiny-aligner": TINY_ALIGNER,
    "asr-0.6b": ASR_0_6B,
    "asr-1.7b": ASR_1_7B,
    "aligner-0.6b": ALIGNER_0_6B,
}


def _full_audio_config(spec: CheckpointSpec) -> dict:
    missing = [k for k in _AUDIO_SIZE_KEYS if k not in spec.audio]
    if missing:
        raise ValueError(f"audio config lacks {missing}")
    cfg = {"model_type": "qwen3_asr_audio_encoder", **_AUDIO_FIXED, **spec.audio}
    if cfg["d_model"] % cfg["encoder_attention_heads"]:
        raise ValueError("d_model must be a multiple of encoder_attention_heads")
    if cfg["num_mel_bins"] != 128:
        raise ValueError("the Whisper front end of the released models has 128 mel bins")
    return cfg


def _full_text_config(spec: CheckpointSpec) -> dict:
    missing = [k for k in _TEXT_SIZE_KEYS if k not in spec.text]
    if missing:
        raise ValueError(f"text config lacks {missing}")
    cfg = {"model_type": "qwen3_asr_text", **_TEXT_FIXED}
    cfg["tie_word_embeddings"] = spec.kind == "asr"
    cfg.update({k: v for k, v in spec.text.items() if k != "rope_scaling"})
    head_dim = cfg["head_dim"]
    rope = {
        "rope_type": "default",
        "mrope_section": _mrope_section(head_dim),
        "interleaved": True,
        "mrope_interleaved": True,
    }
    rope.update(spec.text.get("rope_scaling") or {})
    if sum(rope["mrope_section"]) != head_dim // 2:
        raise ValueError(f"mrope_section {rope['mrope_section']} must sum to head_dim/2 = {head_dim // 2}")
    cfg["rope_scaling"] = rope
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    if cfg["vocab_size"] <= TIMESTAMP_ID:
        raise ValueError(f"vocab_size must exceed {TIMESTAMP_ID}")
    return cfg


def build_config(spec: CheckpointSpec, dtype: str = "bfloat16") -> dict:
    """The config.json dict for ``spec``."""
    if spec.kind not in ("asr", "aligner"):
        raise ValueError(f"kind must be 'asr' or 'aligner', not {spec.kind!r}")
    audio = _full_audio_config(spec)
    text = _full_text_config(spec)
    if audio["output_dim"] != text["hidden_size"]:
        raise ValueError("audio output_dim must equal the text hidden_size")
    if spec.kind == "aligner" and text["tie_word_embeddings"]:
        raise ValueError("the aligner's classify_num-class head cannot be tied to the embeddings")
    thinker = {
        "model_type": "qwen3_forced_aligner" if spec.kind == "aligner" else "qwen3_asr_thinker",
        "audio_config": audio,
        "text_config": text,
        "audio_token_id": AUDIO_PAD_ID,
        "audio_start_token_id": AUDIO_START_ID,
        "audio_end_token_id": AUDIO_END_ID,
        "user_token_id": 872,
        "initializer_range": 0.02,
        "dtype": dtype,
    }
    if spec.kind == "aligner":
        thinker["classify_num"] = int(spec.classify_num)
    config = {
        "architectures": ["Qwen3ASRForConditionalGeneration"],
        "model_type": "qwen3_asr",
        "support_languages": list(SUPPORTED_LANGUAGES),
        "thinker_config": thinker,
        "dtype": dtype,
        "transformers_version": TRANSFORMERS_VERSION,
    }
    if spec.kind == "aligner":
        config["timestamp_token_id"] = TIMESTAMP_ID
        config["timestamp_segment_time"] = 80
    return config


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


_DTYPE_TAGS = {"float32": ("F32", 4), "bfloat16": ("BF16", 2), "float16": ("F16", 2)}


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

    tag, width = _DTYPE_TAGS[dtype]
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


def _write_weights(out: pathlib.Path, spec: CheckpointSpec, seed: int, dtype: str, max_shard_bytes: int | None):
    plan = tensor_plan(spec)
    width = _DTYPE_TAGS[dtype][1]
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


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------

_QWEN2_SPLIT = QWEN2_SPLIT_PATTERN  # the split the checkpoints' tokenizer uses

# Text the merges are learned from: plain English and Chinese sentences of the kind a
# speech recogniser hears, plus the "language X" prefixes the model writes.
_TRAINING_TEXT = (
    "language English language Chinese language Japanese language Korean language None "
    "language German language French language Spanish language Cantonese\n"
    "The weather today is clear and warm, so we are going to walk to the station.\n"
    "Please tell me what time the meeting starts in the morning and where it will be.\n"
    "I think that this is one of the most interesting things that I have ever heard.\n"
    "She said that they would come back after the holiday with their children.\n"
    "Thank you very much for listening, and have a good evening everyone.\n"
    "We need to finish the report before Friday, otherwise the manager will not be happy.\n"
    "The train was late again, and there were a lot of people waiting on the platform.\n"
    "Can you hear me now? Let me know if the sound is too loud or too quiet.\n"
    "In the beginning there was only a small shop at the corner of the street.\n"
    "The results of the experiment show that the new method works better than the old one.\n"
    "He opened the window and looked at the mountains in the distance for a long time.\n"
    "It's not what you say, it's how you say it, and that's what they'll remember.\n"
    "One, two, three, four, five: the numbers 2024 and 1999 were read out loud.\n"
    "Good morning, this is the news at seven o'clock, and here are the main stories.\n"
    "The government announced a new plan to build more houses for young families.\n"
    "Scientists have found water on the surface of a distant planet.\n"
    "Our team played very well in the second half and won the match by two goals.\n"
    "If you have any questions about your order, please contact our customer service.\n"
    "The doctor told him to drink more water and to get some rest every afternoon.\n"
    "My brother is learning to play the piano, and he practices every single day.\n"
    "They were talking about the history of the city and the people who lived there.\n"
    "Turn left at the next traffic light, then go straight for about five hundred meters.\n"
    "The company reported that its sales increased by ten percent during the last quarter.\n"
    "When I was a child, we used to spend the summer at my grandmother's house.\n"
    "Speech recognition turns spoken words into written text, one sentence at a time.\n"
    "Remember to switch off the lights and to lock the door when you leave the office.\n"
    "The teacher asked the students to read the next chapter before the lesson on Monday.\n"
    "Would you like some coffee or tea? I'd like a cup of green tea, thank you.\n"
    "There is nothing more important than the health and happiness of the people you love.\n"
    "今天天气很好，我们一起去公园散步吧。\n"
    "请问会议几点开始？我们需要提前准备一下材料。\n"
    "这个方法比以前的方法更好，结果也更加准确。\n"
    "我觉得这是我听过的最有意思的事情之一。\n"
    "他们说假期以后会带着孩子一起回来。\n"
    "谢谢大家的收听，祝大家晚上愉快。\n"
    "火车又晚点了，站台上有很多人在等车。\n"
    "我们在学校学习中文和英文，也学习数学和历史。\n"
    "你现在能听到我说话吗？如果声音太大或者太小请告诉我。\n"
    "这是一个关于语音识别的测试，我们希望结果是对的。\n"
    "早上好，现在是七点钟新闻，下面是今天的主要内容。\n"
    "政府宣布了一个新的计划，为年轻的家庭建造更多的房子。\n"
    "我们的球队下半场踢得非常好，最后以两球赢得了比赛。\n"
    "如果您对订单有任何问题，请联系我们的客户服务中心。\n"
    "医生告诉他要多喝水，每天下午好好休息一下。\n"
    "我的弟弟正在学习弹钢琴，他每天都练习很长时间。\n"
    "在下一个红绿灯左转，然后一直往前走大约五百米。\n"
    "公司表示上个季度的销售额增长了百分之十。\n"
    "小时候我们常常在奶奶家里过暑假。\n"
    "语音识别把说出来的话变成文字，一句一句地写下来。\n"
    "离开办公室的时候请记得关灯和锁门。\n"
    "老师让学生们在星期一上课之前先读下一章。\n"
    "您想喝咖啡还是茶？我想要一杯绿茶，谢谢。\n"
    "没有什么比你所爱的人的健康和快乐更重要的了。\n"
)

_NUM_MERGES = 480


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the byte-level alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def _pretokenize(text: str) -> list[str]:
    """Split ``text`` the way Qwen2's tokenizer does before BPE."""
    from tokenizers import Regex, pre_tokenizers

    splitter = pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False)
    return [piece for piece, _ in splitter.pre_tokenize_str(text)]


def _learn_merges(text: str, num_merges: int, byte_map: dict[int, str]) -> list[tuple[str, str]]:
    """Plain BPE training (ties broken by the pair's text, so the result is deterministic)."""
    import unicodedata
    from collections import Counter

    words = Counter()
    for piece in _pretokenize(unicodedata.normalize("NFC", text)):
        words[tuple(byte_map[b] for b in piece.encode("utf-8"))] += 1
    vocab = dict(words)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for word, freq in vocab.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += freq
        if not pairs:
            break
        best_freq = max(pairs.values())
        if best_freq < 2:
            break
        best = min(p for p, f in pairs.items() if f == best_freq)
        merges.append(best)
        joined = best[0] + best[1]
        new_vocab = {}
        for word, freq in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            key = tuple(out)
            new_vocab[key] = new_vocab.get(key, 0) + freq
        vocab = new_vocab
    return merges


def _filler_strings(byte_map: dict[int, str], seed: int) -> Iterator[str]:
    """Decode-only tokens (no merge produces them) for the ids the merges leave free.

    Realistic first (ASCII pairs, whole 2-byte characters, whole CJK characters), then
    fragments: every remaining byte pair (lone UTF-8 lead and continuation bytes
    included), ASCII triples, and finally random byte triples.
    """
    enc = lambda bs: "".join(byte_map[b] for b in bs)  # noqa: E731
    printable = range(32, 127)
    for a in printable:
        for b in printable:
            yield enc((a, b))
    for cp in range(0x80, 0x800):
        yield enc(chr(cp).encode("utf-8"))
    for cp in range(0x4E00, 0xA000):
        yield enc(chr(cp).encode("utf-8"))
    for a in range(256):
        for b in range(256):
            yield enc((a, b))
    letters = b" abcdefghijklmnopqrstuvwxyz"
    for a in letters:
        for b in letters:
            for c in letters:
                yield enc((a, b, c))
    rng = random.Random(seed)
    while True:
        yield enc((rng.randrange(256), rng.randrange(256), rng.randrange(256)))


@functools.lru_cache(maxsize=1)
def _tokenizer_texts() -> tuple[str, str]:
    vocab, merges = build_tokenizer_files()
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    return json.dumps(vocab, ensure_ascii=False), "\n".join(lines) + "\n"


def build_tokenizer_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab covering ids 0..151642, merges) of the small byte-level BPE.

    The same for every checkpoint (the weights' seed does not change it).
    """
    byte_map = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for ch in byte_map.values():
        vocab[ch] = len(vocab)
    merges = _learn_merges(_TRAINING_TEXT, _NUM_MERGES, byte_map)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    for s in _filler_strings(byte_map, seed=0):
        if len(vocab) >= FIRST_SPECIAL_ID:
            break
        if s not in vocab:
            vocab[s] = len(vocab)
    assert len(vocab) == FIRST_SPECIAL_ID
    return vocab, merges


def build_tokenizer_config() -> dict:
    added = {
        str(i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, content, special in SPECIAL_TOKENS
    }
    multimodal = {
        "audio_bos_token": "<|audio_start|>",
        "audio_eos_token": "<|audio_end|>",
        "audio_token": "<|audio_pad|>",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [
            c for i, c, special in SPECIAL_TOKENS if special and i not in (ENDOFTEXT_ID,)
        ],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "extra_special_tokens": multimodal,
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        **multimodal,
    }


def _write_tokenizer(out: pathlib.Path) -> None:
    vocab_text, merges_text = _tokenizer_texts()
    (out / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (out / "merges.txt").write_text(merges_text, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(build_tokenizer_config(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


# --------------------------------------------------------------------------------------
# Other side files
# --------------------------------------------------------------------------------------

PREPROCESSOR_CONFIG = {
    "chunk_length": 30,
    "dither": 0.0,
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 128,
    "hop_length": 160,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "Qwen3ASRProcessor",
    "return_attention_mask": True,
    "sampling_rate": 16000,
}

GENERATION_CONFIG = {
    "do_sample": False,
    "eos_token_id": [ENDOFTEXT_ID, IM_END_ID],
    "pad_token_id": ENDOFTEXT_ID,
    "transformers_version": TRANSFORMERS_VERSION,
}


def _dump(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def write_checkpoint(
    out_dir,
    spec: CheckpointSpec,
    *,
    seed: int = 0,
    dtype: str = "float32",
    max_shard_bytes: int | None = None,
) -> pathlib.Path:
    """Write a random-weight checkpoint for ``spec`` into ``out_dir``; returns its path.

    ``dtype`` is ``float32``, ``bfloat16`` (the published one) or ``float16``.  With
    ``max_shard_bytes`` the weights are split into ``model-0000k-of-0000N.safetensors``
    files of at most that many bytes each (a tensor larger than that gets a file of its
    own) plus ``model.safetensors.index.json``; a single file is written when everything
    fits.  Existing ``model*.safetensors`` files in ``out_dir`` are replaced.
    """
    if dtype not in _DTYPE_TAGS:
        raise ValueError(f"dtype must be one of {sorted(_DTYPE_TAGS)}, not {dtype!r}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = build_config(spec, dtype=dtype)
    _dump(out / "config.json", config)
    _dump(out / "generation_config.json", GENERATION_CONFIG)
    _dump(out / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    _dump(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_tokenizer(out)
    _write_weights(out, spec, seed, dtype, max_shard_bytes)
    return out


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qwen3_asr_stream.testing.checkpoints",
        description="Write a random-weight Qwen3-ASR / ForcedAligner checkpoint in the published layout.",
    )
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shard-mb", type=float, default=None, help="shard the weights into files of at most N MiB")
    args = parser.parse_args(argv)
    shard = int(args.max_shard_mb * 1024 * 1024) if args.max_shard_mb else None
    t0 = time.perf_counter()
    out = write_checkpoint(args.out, PRESETS[args.preset], seed=args.seed, dtype=args.dtype, max_shard_bytes=shard)
    elapsed = time.perf_counter() - t0
    weights = sorted(out.glob("model*.safetensors"))
    size = sum(p.stat().st_size for p in weights)
    params = sum(math.prod(t.shape) for t in tensor_plan(PRESETS[args.preset]))
    print(
        f"wrote {out} ({args.preset}, {args.dtype}): {params / 1e6:.1f}M parameters in "
        f"{len(weights)} file(s), {size / 2**20:.1f} MiB, {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
