"""Model dimensions parsed from a checkpoint's ``config.json``.

Every size is read from the file; nothing falls back to a constructor default,
because the defaults of the official configuration classes are not those of the
released checkpoints. A missing field raises :class:`ConfigError` naming it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Mapping


class ConfigError(ValueError):
    """config.json is missing a field, or describes a model we do not implement."""


class ModelKind(str, enum.Enum):
    ASR = "asr"
    ALIGNER = "aligner"


def _require(section: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in section:
        raise ConfigError(f"config.json: '{where}.{key}' is missing; every model size must be given in the file")
    return section[key]


def _section(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = _require(parent, key, where)
    if not isinstance(value, Mapping):
        raise ConfigError(f"config.json: '{where}.{key}' must be an object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class AudioEncoderDims:
    num_mel_bins: int
    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    output_dim: int
    n_window: int
    n_window_infer: int
    conv_chunksize: int
    downsample_hidden_size: int
    max_source_positions: int

    def __post_init__(self) -> None:
        if self.d_model % self.encoder_attention_heads:
            raise ConfigError(
                f"audio_config: d_model {self.d_model} is not divisible by encoder_attention_heads "
                f"{self.encoder_attention_heads}"
            )
        if self.n_window_infer % self.chunk_frames:
            raise ConfigError(
                f"audio_config: n_window_infer {self.n_window_infer} must be a multiple of 2 * n_window "
                f"({self.chunk_frames})"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.encoder_attention_heads

    @property
    def chunk_frames(self) -> int:
        """Mel frames per convolution chunk (100 = 1 s); positions restart in every chunk."""
        return 2 * self.n_window

    @property
    def tokens_per_chunk(self) -> int:
        """Encoder tokens from one full chunk (13 for 100 frames: three stride-2 convolutions)."""
        return conv_output_length(self.chunk_frames)

    @property
    def chunks_per_window(self) -> int:
        return self.n_window_infer // self.chunk_frames

    @property
    def window_frames(self) -> int:
        """Mel frames of one attention window (800 = 8 s); no attention crosses windows."""
        return self.n_window_infer

    @property
    def window_tokens(self) -> int:
        """Encoder tokens of one full attention window (104)."""
        return self.chunks_per_window * self.tokens_per_chunk

    @property
    def conv_out_features(self) -> int:
        """Channels times mel bins left after the three stride-2 convolutions."""
        freq = self.num_mel_bins
        for _ in range(3):
            freq = (freq + 1) // 2
        return self.downsample_hidden_size * freq

    def output_length(self, frames: int) -> int:
        """Encoder tokens for ``frames`` mel frames: 13 per full chunk plus the partial tail."""
        full, tail = divmod(frames, self.chunk_frames)
        return full * self.tokens_per_chunk + (conv_output_length(tail) if tail else 0)


def conv_output_length(frames: int) -> int:
    """Length after three stride-2, kernel-3, padding-1 convolutions."""
    for _ in range(3):
        frames = (frames - 1) // 2 + 1
    return frames


@dataclass(frozen=True)
class TextDecoderDims:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"text_config: num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"text_config: head_dim {self.head_dim} must be even for rotary embeddings")


@dataclass(frozen=True)
class ModelDims:
    """Everything the modules need, from one config.json."""

    kind: ModelKind
    audio: AudioEncoderDims
    text: TextDecoderDims
    audio_token_id: int
    audio_start_token_id: int | None
    audio_end_token_id: int | None
    # Forced aligner only.
    classify_num: int | None = None
    timestamp_token_id: int | None = None
    timestamp_segment_ms: float | None = None
    support_languages: tuple[str, ...] = ()

    @property
    def head_size(self) -> int:
        """Output size of the final linear layer: the vocabulary, or the aligner's time classes."""
        if self.kind is ModelKind.ALIGNER:
            assert self.classify_num is not None
            return self.classify_num
        return self.text.vocab_size

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ModelDims":
        """Parse a config.json dict in the published layout (everything under ``thinker_config``)."""
        top_type = config.get("model_type")
        if top_type != "qwen3_asr":
            raise ConfigError(
                f"config.json: model_type is {top_type!r}, expected 'qwen3_asr' "
                "(a Qwen3-ASR or Qwen3-ForcedAligner checkpoint)"
            )
        thinker = _section(config, "thinker_config", "")
        audio_cfg = _section(thinker, "audio_config", "thinker_config")
        text_cfg = _section(thinker, "text_config", "thinker_config")
        where_a, where_t = "thinker_config.audio_config", "thinker_config.text_config"

        activation = audio_cfg.get("activation_function", "gelu")
        if activation != "gelu":
            raise ConfigError(f"{where_a}.activation_function {activation!r} is not supported (only 'gelu')")
        hidden_act = text_cfg.get("hidden_act", "silu")
        if hidden_act != "silu":
            raise ConfigError(f"{where_t}.hidden_act {hidden_act!r} is not supported (only 'silu')")
        if audio_cfg.get("scale_embedding", False):
            raise ConfigError(f"{where_a}.scale_embedding=true is not supported")
        rope_scaling = text_cfg.get("rope_scaling") or {}
        rope_type = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
        if rope_type != "default":
            raise ConfigError(f"{where_t}.rope_scaling.rope_type {rope_type!r} is not supported (only 'default')")

        audio = AudioEncoderDims(
            **{
                name: int(_require(audio_cfg, name, where_a))
                for name in (
                    "num_mel_bins",
                    "d_model",
                    "encoder_layers",
                    "encoder_attention_heads",
                    "encoder_ffn_dim",
                    "output_dim",
                    "n_window",
                    "n_window_infer",
                    "conv_chunksize",
                    "downsample_hidden_size",
                    "max_source_positions",
                )
            }
        )
        hidden = int(_require(text_cfg, "hidden_size", where_t))
        heads = int(_require(text_cfg, "num_attention_heads", where_t))
        text = TextDecoderDims(
            vocab_size=int(_require(text_cfg, "vocab_size", where_t)),
            hidden_size=hidden,
            intermediate_size=int(_require(text_cfg, "intermediate_size", where_t)),
            num_hidden_layers=int(_require(text_cfg, "num_hidden_layers", where_t)),
            num_attention_heads=heads,
            num_key_value_heads=int(_require(text_cfg, "num_key_value_heads", where_t)),
            head_dim=int(text_cfg.get("head_dim") or hidden // heads),
            rms_norm_eps=float(_require(text_cfg, "rms_norm_eps", where_t)),
            rope_theta=float(_require(text_cfg, "rope_theta", where_t)),
            max_position_embeddings=int(_require(text_cfg, "max_position_embeddings", where_t)),
            tie_word_embeddings=bool(text_cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
        )
        if audio.output_dim != text.hidden_size:
            raise ConfigError(
                f"{where_a}.output_dim {audio.output_dim} must equal {where_t}.hidden_size {text.hidden_size}"
            )

        thinker_type = str(thinker.get("model_type", ""))
        kind = ModelKind.ALIGNER if "forced_aligner" in thinker_type else ModelKind.ASR
        extra: dict[str, Any] = {}
        if kind is ModelKind.ALIGNER:
            extra["classify_num"] = int(_require(thinker, "classify_num", "thinker_config"))
            extra["timestamp_token_id"] = int(_require(config, "timestamp_token_id", ""))
            segment = float(_require(config, "timestamp_segment_time", ""))
            if not math.isfinite(segment) or segment <= 0:
                raise ConfigError(f"config.json: timestamp_segment_time must be positive, got {segment}")
            extra["timestamp_segment_ms"] = segment

        def optional_id(key: str) -> int | None:
            value = thinker.get(key)
            return None if value is None else int(value)

        return cls(
            kind=kind,
            audio=audio,
            text=text,
            audio_token_id=int(_require(thinker, "audio_token_id", "thinker_config")),
            audio_start_token_id=optional_id("audio_start_token_id"),
            audio_end_token_id=optional_id("audio_end_token_id"),
            support_languages=tuple(config.get("support_languages") or ()),
            **extra,
        )
