"""WeSpeaker's ResNet34 speaker-embedding network (the one pyannote's diarization pipelines use).

Log-mel filter banks ``(batch, frames, mels)`` (``audio/fbank.py``, mean-normalized over the
frames) are a one-channel image ``(batch, 1, mels, frames)``: a 3x3 convolution, then four stages
of residual basic blocks (3, 4, 6, 3 blocks of 32, 64, 128, 256 channels; each later stage halves
both axes), temporal statistics pooling (the mean and the unbiased standard deviation over frames
of each channel x frequency row: 2 x 256 x mels / 8 values) and one linear layer to the embedding.
Parameter names follow pyannote.audio's ``WeSpeakerResNet34.resnet`` so that its checkpoints load
as they are. Tensors only, no I/O (the loader is ``engine/speakers.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class WeSpeakerDims:
    mels: int = 80  # filter banks per frame
    channels: int = 32  # of the first stage; each next stage doubles them
    blocks: tuple[int, ...] = (3, 4, 6, 3)  # basic blocks per stage (ResNet34)
    embedding: int = 256

    def __post_init__(self) -> None:
        if self.mels % 8 or self.mels <= 0:
            raise ValueError(f"mels must be a positive multiple of 8 (three stages halve it), got {self.mels}")
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"blocks must be 4 positive counts, got {self.blocks}")

    @property
    def pooled(self) -> int:  # statistics per window: mean and std of (last stage channels x mels / 8) rows
        return 2 * self.channels * 8 * (self.mels // 8)


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class WeSpeakerResNet(nn.Module):
    def __init__(self, dims: WeSpeakerDims = WeSpeakerDims()) -> None:
        super().__init__()
        self.dims = dims
        c = dims.channels
        self.conv1 = nn.Conv2d(1, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        stages, inputs = [], c
        for i, count in enumerate(dims.blocks):
            outputs = c << i
            stages.append(nn.Sequential(*[BasicBlock(inputs if k == 0 else outputs, outputs,
                                                     1 if i == 0 or k else 2) for k in range(count)]))
            inputs = outputs
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.seg_1 = nn.Linear(dims.pooled, dims.embedding)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, mels)`` normalized filter banks (at least 8 frames) -> ``(batch, embedding)``
        (not normalized)."""
        x = features.transpose(1, 2).unsqueeze(1)  # (batch, 1, mels, frames)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (batch, 8c, mels / 8, frames / 8)
        x = x.flatten(1, 2)  # (batch, 8c * mels / 8, frames / 8)
        stats = torch.cat([x.mean(dim=-1), x.std(dim=-1, correction=1)], dim=-1)  # (batch, pooled)
        return self.seg_1(stats)
