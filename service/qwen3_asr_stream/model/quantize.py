"""Int8 weight quantization for the CPU: the decoder's linear layers and the output head.

Decoding one token reads every decoder weight once, so on a CPU it is bound by
memory bandwidth; int8 weights (per output channel, with activations quantized
on the fly) read 4x fewer bytes than float32. The audio encoder, which is
compute bound on long windows, stays in floating point.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .qwen3_asr import SpeechModel


def quantize_int8(model: SpeechModel) -> SpeechModel:
    """Replace the decoder's ``nn.Linear`` layers and the head with dynamic int8 ones (CPU only)."""
    if model.device.type != "cpu":
        raise ValueError("int8 quantization is for the CPU; on CUDA use bfloat16")
    if model.dtype != torch.float32:
        raise ValueError("int8 quantization starts from float32 weights (--dtype float32)")
    quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    if quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise ValueError(f"torch {torch.__version__} has no dynamic int8 quantization; use float32 or bfloat16")
    qconfig = quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        # torch marks its eager quantization API as legacy; it still works and is what we need here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        thinker = model.thinker
        thinker.model.layers = quantization.quantize_dynamic(
            thinker.model.layers, {nn.Linear: qconfig}, dtype=torch.qint8
        )
        head = nn.Sequential(nn.Linear(thinker.lm_head.in_features, thinker.lm_head.out_features, bias=False))
        head[0].weight = nn.Parameter(thinker.lm_head.weight.detach().clone(), requires_grad=False)
        thinker.lm_head = quantization.quantize_dynamic(head, {nn.Linear: qconfig}, dtype=torch.qint8)[0]
    model.quantized = True
    return model
