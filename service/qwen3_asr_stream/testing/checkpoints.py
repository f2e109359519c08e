"""Random-weight Qwen3-ASR / Qwen3-ForcedAligner checkpoints in the published layout.

No real weights can be downloaded where the tests run, so this module writes a
folder that looks exactly like ``Qwen/Qwen3-ASR-0.6B`` (or 1.7B, or
``Qwen/Qwen3-ForcedAligner-0.6B``) on the Hugging Face hub, with random weights:

* ``config.json``: ``model_type: qwen3_asr``, every size under ``thinker_config``
  (see ``specs``, which also holds ``CheckpointSpec`` and the presets);
* ``model.safetensors`` or ``model-0000k-of-0000N.safetensors`` shards plus
  ``model.safetensors.index.json`` (see ``weights``: the tensor plan, the
  initialisation, the streamed safetensors writing);
* a small byte-level BPE tokenizer in the Qwen2 layout (``vocab.json``,
  ``merges.txt``, ``tokenizer_config.json``, no ``tokenizer.json``) whose vocabulary
  covers every id 0..151642, with the special tokens at their published ids (see
  ``tokens``);
* ``chat_template.json`` (the processor's chat template), ``preprocessor_config.json``
  (Whisper feature extractor) and ``generation_config.json`` (greedy).

This module holds ``write_checkpoint``, which puts those pieces into one folder, and
the command line; it re-exports the public names of ``specs``, ``tokens`` and
``weights`` so ``from qwen3_asr_stream.testing.checkpoints import ...`` keeps working.

Command line::

    python -m qwen3_asr_stream.testing.checkpoints --preset tiny-asr --out DIR \
        [--dtype float32|bfloat16] [--seed N] [--max-shard-mb N]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

from .specs import (  # noqa: F401 - re-exported
    ALIGNER_0_6B,
    ALIGNER_VOCAB_SIZE,
    ASR_0_6B,
    ASR_1_7B,
    ASR_VOCAB_SIZE,
    GENERATION_CONFIG,
    PREPROCESSOR_CONFIG,
    PRESETS,
    SUPPORTED_LANGUAGES,
    TINY_ALIGNER,
    TINY_ASR,
    TINY_ASR_ALT,
    TRANSFORMERS_VERSION,
    CheckpointSpec,
    build_config,
)
from .tokens import (  # noqa: F401 - re-exported
    ASR_TEXT_ID,
    AUDIO_END_ID,
    AUDIO_PAD_ID,
    AUDIO_START_ID,
    CHAT_TEMPLATE,
    ENDOFTEXT_ID,
    FIRST_SPECIAL_ID,
    IM_END_ID,
    IM_START_ID,
    NON_SPEECH_ID,
    SPECIAL_TOKENS,
    TIMESTAMP_ID,
    build_tokenizer_config,
    build_tokenizer_files,
    write_tokenizer,
)
from .weights import DTYPE_TAGS, tensor_plan, write_weights

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
    if dtype not in DTYPE_TAGS:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_TAGS)}, not {dtype!r}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = build_config(spec, dtype=dtype)
    _dump(out / "config.json", config)
    _dump(out / "generation_config.json", GENERATION_CONFIG)
    _dump(out / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    _dump(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_tokenizer(out)
    write_weights(out, spec, seed, dtype, max_shard_bytes)
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
