"""GPU checks (skipped without CUDA): the same code path on the device, bf16, the engine."""

from __future__ import annotations

import pytest
import torch

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import LoadOptions, load_model
from qwen3_asr_stream.engine.options import PolicyOptions, UtteranceOptions
from qwen3_asr_stream.engine.runner import ModelRunner
from qwen3_asr_stream.engine.utterance import Utterance
from qwen3_asr_stream.frontend import log_mel
from qwen3_asr_stream.tokenizer import TextTokenizer

pytestmark = pytest.mark.cuda


def test_float32_on_cuda_matches_cpu(checkpoints):
    cpu = load_model(checkpoints["asr"])
    gpu = load_model(checkpoints["asr"], LoadOptions(device="cuda"))
    mel = log_mel(torch.from_numpy(tone_mix(9.5, seed=1)))
    a = cpu.encode_audio([mel])[0]
    b = gpu.encode_audio([mel.cuda()])[0].cpu()
    assert float((a - b).abs().max() / a.abs().max()) < 1e-3
    ids = torch.randint(0, 151000, (2, 20))
    with torch.inference_mode():
        la = cpu(cpu.embed(ids), cpu.new_cache(2, 20), last_only=False)
        lb = gpu(gpu.embed(ids.cuda()), gpu.new_cache(2, 20), last_only=False).cpu()
    assert float((la - lb).abs().max() / la.abs().max()) < 1e-3


def test_engine_updates_in_bfloat16_on_cuda(checkpoints):
    folder = checkpoints["asr"]
    model = load_model(folder, LoadOptions(device="cuda", dtype="bfloat16"))
    runner = ModelRunner(model, TextTokenizer.from_folder(folder), PolicyOptions(max_tokens_final=16))
    d = model.dims.audio
    utts = [Utterance(i, UtteranceOptions(), d.window_frames, d.window_tokens, d.num_mel_bins) for i in range(4)]
    for i, u in enumerate(utts):
        u.append(tone_mix(3.0 + 4 * i, seed=i))
    interims = runner.update([(u, False) for u in utts])
    finals = runner.update([(u, True) for u in utts])
    assert all(not r.error for r in interims + finals)
    assert all(r.is_final for r in finals)
