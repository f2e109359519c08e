"""Int8 weights on the CPU: the decoder and head quantized, close to float32, usable by the engine."""

from __future__ import annotations

import pytest
import torch

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import LoadOptions, load_model
from qwen3_asr_stream.engine.options import PolicyOptions
from qwen3_asr_stream.engine.runner import ModelRunner
from qwen3_asr_stream.engine.utterance import Utterance, UtteranceSpec
from qwen3_asr_stream.text.prompts import asr_prompt_ids
from qwen3_asr_stream.text.tokenizer import TextTokenizer


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
    """The engine's updates run through the int8 layers and decode real tokens, the same on every run."""
    folder = checkpoints["asr"]
    model = load_model(folder, LoadOptions(quantize="int8"))
    tokenizer = TextTokenizer.from_folder(folder)
    quantized = [m for m in model.thinker.modules() if "quantized" in type(m).__module__]
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in quantized]
    d = model.dims.audio

    def run():
        runner = ModelRunner(model, PolicyOptions(max_tokens_final=8, max_tokens_per_update=6),
                             tokenizer.end_of_text_ids())
        utt = Utterance(1, UtteranceSpec(*asr_prompt_ids(tokenizer)), d.window_frames, d.window_tokens, d.num_mel_bins)
        utt.append(tone_mix(9.0, seed=3))
        return runner.update([(utt, False)])[0], runner.update([(utt, True)])[0]

    interim, final = run()
    for hook in hooks:
        hook.remove()
    assert quantized and len(calls) >= len(quantized)
    assert final.is_final and len(final.tokens) > 0 and len(interim.tokens) > 0
    again_interim, again_final = run()
    assert (again_interim.tokens, again_final.tokens) == (interim.tokens, final.tokens)


def test_int8_needs_cpu_float32():
    with pytest.raises(ValueError, match="int8 quantization runs on the CPU from float32"):
        LoadOptions(quantize="int8", dtype="bfloat16")
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        LoadOptions(quantize="int4")
