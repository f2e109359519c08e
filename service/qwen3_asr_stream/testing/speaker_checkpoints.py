"""A random-weight WeSpeaker ResNet34 checkpoint in pyannote's published layout.

``pyannote/wespeaker-voxceleb-resnet34-LM`` holds ``pytorch_model.bin``: a Lightning checkpoint
whose ``state_dict`` has the network under ``resnet.`` and whose ``pyannote.audio`` entry names the
architecture (pyannote also pickles its task specifications there; this writer leaves them out,
tests/test_wespeaker.py writes the full file with pyannote.audio itself); beside it a
``config.yaml`` naming the architecture (the loader reads only ``pytorch_model.bin``).
Random weights give no real speakers: for tests and for trying the service without a download.

    python -m qwen3_asr_stream.testing.speaker_checkpoints --out DIR [--seed N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..model.wespeaker import WeSpeakerDims, WeSpeakerResNet

CONFIG_YAML = """\
model:
  _target_: pyannote.audio.models.embedding.WeSpeakerResNet34
  sample_rate: 16000
  num_channels: 1
  num_mel_bins: 80
  frame_length: 25
  frame_shift: 10
"""


def randomize_batch_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters (fresh ones are the identity)."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
            m.weight.data.copy_(0.8 + 0.4 * torch.rand(m.num_features, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=generator))


def write_wespeaker(out: str | Path, seed: int = 0) -> Path:
    """Write ``pytorch_model.bin`` and ``config.yaml`` into ``out`` (created); returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    network = WeSpeakerResNet(WeSpeakerDims())
    with torch.no_grad():
        randomize_batch_norms(network, torch.Generator().manual_seed(seed))
    checkpoint = {
        "state_dict": {f"resnet.{k}": v for k, v in network.state_dict().items()},
        "pyannote.audio": {"architecture": {"module": "pyannote.audio.models.embedding.wespeaker",
                                            "class": "WeSpeakerResNet34"}},
    }
    torch.save(checkpoint, out / "pytorch_model.bin")
    (out / "config.yaml").write_text(CONFIG_YAML)
    return out


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen3_asr_stream.testing.speaker_checkpoints",
                                     description="Write a random-weight WeSpeaker ResNet34 checkpoint "
                                                 "(pyannote's layout).")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {write_wespeaker(args.out, args.seed)} (random WeSpeaker ResNet34; "
          f"--speaker-model wespeaker-resnet34:{args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
