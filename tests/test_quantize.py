"""Int8 weights on the CPU: the decoder and head quantized, close to float32, usable by the engine."""

from __future__ import annotations

import pytest
import torch

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import LoadOptions, load_model
from qwen3_asr_stream.engine.options import PolicyOptions, UtteranceOptions
from qwen3_asr_stream.engine.runner import ModelRunner
from qwen3_asr_stream.engine.utterance import Utterance
from qwen3_asr_stream.tokenizer import TextTokenizer


def test_int8_logits_stay_close_to_float32(checkpoints):
    full = load_model(checkpoints["asr"])
    small = load_model(checkpoints["asr"], LoadOptions(quantize="int8"))
    assert small.quantized and "quantized" in type(small.thinker.lm_head).__module__
    ids = torch.randint(0, 151000, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = full(full.embed(ids), full.new_cache(2, 30), last_only=False)
        b = small(small.embed(ids), small.new_cache(2, 30), last_only=False)
    cosine = torch.nn.functional.cosine_similarity(a.flatten(0, 1), b.flatten(0, 1), dim=-1)
    # Random tiny weights have no outlier structure; real checkpoints keep more. A broken
    # quantization (wrong scales, transposed weights) gives a cosine near 0.
    assert float(cosine.min()) > 0.95
    assert float(cosine.mean()) > 0.98


def test_engine_runs_on_int8_weights(checkpoints):
    folder = checkpoints["asr"]
    model = load_model(folder, LoadOptions(quantize="int8"))
    runner = ModelRunner(model, TextTokenizer.from_folder(folder), PolicyOptions(max_tokens_final=8))
    d = model.dims.audio
    utt = Utterance(1, UtteranceOptions(), d.window_frames, d.window_tokens, d.num_mel_bins)
    utt.append(tone_mix(9.0, seed=3))
    interim = runner.update([(utt, False)])[0]
    final = runner.update([(utt, True)])[0]
    assert final.is_final and not final.error and not interim.error


def test_int8_needs_cpu_float32():
    with pytest.raises(ValueError, match="int8 quantization runs on the CPU from float32"):
        LoadOptions(quantize="int8", dtype="bfloat16")
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        LoadOptions(quantize="int4")
