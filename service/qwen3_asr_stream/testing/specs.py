"""What a random-weight checkpoint is: ``CheckpointSpec``, the presets, and the JSON configs.

* ``CheckpointSpec`` and the presets: the tiny test models (``TINY_ASR``,
  ``TINY_ASR_ALT``, ``TINY_ALIGNER``) and the released sizes (``ASR_0_6B``,
  ``ASR_1_7B``, ``ALIGNER_0_6B``), by name in ``PRESETS``;
* ``build_config``: ``config.json`` with ``model_type: qwen3_asr`` and every size under
  ``thinker_config`` (``audio_config`` and ``text_config`` with every field written out,
  so nothing relies on the constructor defaults of the official configuration classes,
  which are not the released sizes);
* ``PREPROCESSOR_CONFIG`` (Whisper feature extractor) and ``GENERATION_CONFIG`` (greedy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..text.transcript import SUPPORTED_LANGUAGES as _SUPPORTED_LANGUAGES
from .tokens import AUDIO_END_ID, AUDIO_PAD_ID, AUDIO_START_ID, ENDOFTEXT_ID, IM_END_ID, TIMESTAMP_ID

__all__ = [
    "SUPPORTED_LANGUAGES",
    "ASR_VOCAB_SIZE",
    "ALIGNER_VOCAB_SIZE",
    "TRANSFORMERS_VERSION",
    "CheckpointSpec",
    "TINY_ASR",
    "TINY_ASR_ALT",
    "TINY_ALIGNER",
    "ASR_0_6B",
    "ASR_1_7B",
    "ALIGNER_0_6B",
    "PRESETS",
    "build_config",
    "PREPROCESSOR_CONFIG",
    "GENERATION_CONFIG",
]

# --------------------------------------------------------------------------------------
# Published constants
# --------------------------------------------------------------------------------------

#: The 30 language names the official wrapper accepts (re-exported for the config's ``support_languages``).
SUPPORTED_LANGUAGES = _SUPPORTED_LANGUAGES

ASR_VOCAB_SIZE = 151936
ALIGNER_VOCAB_SIZE = 152064

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
# Side files
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
