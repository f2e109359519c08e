"""Loading published checkpoints: a local folder or a Hugging Face Hub repo id.

All file access of the model lives here; the modules themselves do no I/O.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .model.config import ConfigError, ModelDims
from .model.qwen3_asr import SpeechModel
from .text.tokenizer import TextTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REQUIRED_FILES = ("config.json",)
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja"]


DEFAULT_MODEL = "Qwen/Qwen3-ASR-0.6B"
DEFAULT_ALIGNER = "Qwen/Qwen3-ForcedAligner-0.6B"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found or does not match the model it describes."""


@dataclass(frozen=True)
class LoadOptions:
    dtype: str = "float32"
    device: str = "cpu"
    # "windowed" (as trained; what streaming needs) or "global" (the official CPU path).
    encoder_attention: str = "windowed"
    # "int8": int8 weights for the decoder and head (CPU, float32 only); None: as loaded.
    quantize: str | None = None

    def __post_init__(self) -> None:
        from .model.encoder import ENCODER_ATTENTION

        if self.encoder_attention not in ENCODER_ATTENTION:
            raise ValueError(
                f"encoder_attention must be one of {ENCODER_ATTENTION}, got {self.encoder_attention!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        check_device(self.device)
        if self.quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {self.quantize!r}")
        if self.quantize == "int8" and (self.dtype != "float32" or torch.device(self.device).type != "cpu"):
            raise ValueError("int8 quantization runs on the CPU from float32 weights (dtype float32, device cpu)")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def check_device(device: str, what: str = "device") -> None:
    """ValueError unless ``device`` names a torch device this machine has (``what``: the setting's name)."""
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"{what} {device!r} is not a torch device: {exc}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {device!r} asked for, but CUDA is not available here")


def best_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``LoadOptions`` (every command that loads a model has them)."""
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                        help="weights dtype (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--quantize", default=None, choices=["int8"],
                        help="int8 decoder weights on the CPU (faster decoding, slightly different results)")


def load_options_from(args: argparse.Namespace) -> LoadOptions:
    """``LoadOptions`` from the arguments ``add_load_arguments`` added, with the best defaults here."""
    device = args.device or best_device()
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    return LoadOptions(dtype=dtype, device=device, quantize=getattr(args, "quantize", None))


# How to get each kind of checkpoint: its command-line option and its random-weight preset.
ROLES = {"model": ("--model", "asr-0.6b"), "aligner": ("--aligner", "aligner-0.6b")}


def fetch_hint(role: str) -> str:
    """What to do when a checkpoint of ``role`` ("model" or "aligner") is missing."""
    flag, preset = ROLES[role]
    return (f"pass a downloaded checkpoint folder with {flag}; to try the service without downloading, "
            f"write a random-weight one (no real transcripts): python -m qwen3_asr_stream.testing.checkpoints "
            f"--preset {preset} --out /tmp/{preset} and pass {flag} /tmp/{preset}")


def resolve(path_or_repo: str | os.PathLike[str], role: str = "model", patterns: list[str] = HUB_PATTERNS,
            hint: str | None = None) -> Path:
    """A local checkpoint folder, or the snapshot folder of a Hub repo id.

    A repo id is fetched with ``huggingface_hub`` into its normal cache (only the files matching
    ``patterns``). Without network access the cached snapshot is used; when there is none the
    error says what is missing and how to fetch it. ``role`` ("model" or "aligner") names the
    option in that message; another role (a speaker model) brings its own ``hint``.
    """
    if hint is None and role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
    hint = hint or fetch_hint(role)
    local = Path(path_or_repo).expanduser()
    if local.is_dir():
        return local
    text = str(path_or_repo)
    if local.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(f"{role} checkpoint folder {text!r} does not exist; {hint}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a server dependency
        raise CheckpointError(f"{text!r} is not a local folder, and huggingface_hub is not installed") from exc
    try:
        return Path(snapshot_download(text, allow_patterns=patterns))
    except Exception as online_error:  # noqa: BLE001 - any hub failure falls back to the cache
        try:
            return Path(snapshot_download(text, allow_patterns=patterns, local_files_only=True))
        except Exception:  # noqa: BLE001
            raise CheckpointError(
                f"{role} {text!r} is neither a local folder nor in the Hugging Face cache, and downloading it "
                f"failed ({type(online_error).__name__}: {_first_line(online_error)}). Fetch it where the network "
                f"allows with `hf download {text}` (then copy the cache, or set HF_HOME), or {hint}."
            ) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def read_config(folder: Path) -> ModelDims:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: not a Qwen3-ASR checkpoint folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    try:
        return ModelDims.from_config(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def weight_files(folder: Path) -> list[Path]:
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(f"{folder}: shards named in {WEIGHTS_INDEX} are missing: {', '.join(missing)}")
        return [folder / n for n in names]
    single = folder / WEIGHTS_FILE
    if single.is_file():
        return [single]
    raise CheckpointError(f"{folder} has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX}: the weights are missing")


def _expected_tensors(model: SpeechModel) -> dict[str, torch.Tensor]:
    expected = dict(model.state_dict())
    if model.dims.text.tie_word_embeddings:
        expected.pop("thinker.lm_head.weight", None)
    return expected


def load_model(path_or_repo: str | os.PathLike[str], options: LoadOptions = LoadOptions()) -> SpeechModel:
    """Build the model that config.json describes and fill it with the checkpoint's tensors.

    Raises :class:`CheckpointError` naming every missing or unexpected tensor and
    every shape mismatch.
    """
    from safetensors import safe_open

    folder = resolve(path_or_repo)
    dims = read_config(folder)
    with torch.device("meta"):
        model = SpeechModel(dims)
    expected = _expected_tensors(model)
    loaded: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for file in weight_files(folder):
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in handle.keys():
                if name not in expected:
                    # A tied checkpoint may still carry the head; it must then equal the embedding.
                    if name == "thinker.lm_head.weight" and dims.text.tie_word_embeddings:
                        continue
                    unexpected.append(name)
                    continue
                tensor = handle.get_tensor(name)
                want = tuple(expected[name].shape)
                if tuple(tensor.shape) != want:
                    mismatched.append(f"{name}: file {tuple(tensor.shape)}, model {want}")
                    continue
                loaded[name] = tensor
    missing = sorted(set(expected) - set(loaded) - {m.split(":")[0] for m in mismatched})
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {', '.join(sorted(unexpected)[:20])}")
    if mismatched:
        problems.append(f"shape mismatches: {'; '.join(mismatched[:20])}")
    if problems:
        raise CheckpointError(f"checkpoint {folder} does not match its config.json: " + " | ".join(problems))

    dtype, device = options.torch_dtype, torch.device(options.device)
    model = model.to_empty(device=device)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in loaded.items():
            params[name].copy_(tensor.to(dtype))
    model = model.to(dtype)
    # Buffers (rotary frequencies, sinusoid positions) were not in the file: recompute them.
    _reset_buffers(model)
    model.tie_weights()
    model.encoder.attention = options.encoder_attention
    if options.quantize == "int8":
        from .model.quantize import quantize_int8

        quantize_int8(model)
    return model.eval()


def _reset_buffers(model: SpeechModel) -> None:
    from .model.decoder import RotaryEmbedding
    from .model.encoder import sinusoid_positions

    device = model.device
    dims = model.dims
    model.encoder.positional_embedding = sinusoid_positions(dims.audio.max_source_positions, dims.audio.d_model).to(
        device
    )
    model.decoder.rotary = RotaryEmbedding(dims.text).to(device)


def load_pretrained(path_or_repo: str | os.PathLike[str], options: LoadOptions = LoadOptions(),
                    role: str = "model") -> tuple[SpeechModel, TextTokenizer]:
    """The one loading recipe: a local folder or Hub id -> the model and its tokenizer
    (``role``, "model" or "aligner", names the option in a missing-checkpoint error)."""
    folder = resolve(path_or_repo, role)
    return load_model(folder, options), TextTokenizer.from_folder(folder)
