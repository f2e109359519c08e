"""Model core: ours against the official implementation, same weights, same inputs, same run.

Times (medians): the audio encoder on 10 s and 20 s of audio, the decoder prefill
of a 10 s prompt, and one decode step with a KV cache; ratios official / ours.
Then the decode step against the floor set by memory bandwidth: the weight bytes
one step must read divided by the measured copy bandwidth, for float32 and
bfloat16.

    python benchmarks/bench_model.py [--model DIR] [--preset asr-0.6b] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
from common import checkpoint, median_time, paired_medians, print_table, write_results

import numpy as np
import torch


def copy_bandwidth(megabytes: int = 1024, repeats: int = 5) -> float:
    """Bytes copied per second by a large tensor copy (each byte is read once and written once)."""
    src = torch.empty(megabytes << 20, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src)
    t, _ = median_time(lambda: dst.copy_(src), repeats)
    return src.numel() / t


def weight_bytes_per_step(model) -> int:
    """Bytes of weights a one-token decode step reads: every decoder matrix and the head."""
    if model.quantized:
        # int8 matrices (one byte a weight, plus per-channel scales); norms stay float32.
        total = 0
        for module in model.thinker.model.modules():
            if "quantized" in type(module).__module__ and hasattr(module, "weight"):
                total += module.weight().numel() + module.weight().shape[0] * 8
            elif isinstance(module, torch.nn.Module) and hasattr(module, "weight") and module.weight.dim() == 1:
                total += module.weight.numel() * 4
        head = model.thinker.lm_head.weight()
        return total + head.numel() + head.shape[0] * 8
    total = 0
    seen = set()
    for name, p in model.thinker.named_parameters():
        if name.startswith("audio_tower") or id(p) in seen:
            continue
        seen.add(id(p))
        if name == "model.embed_tokens.weight" and not model.dims.text.tie_word_embeddings:
            total += p.shape[1] * p.element_size()  # one row is looked up
            continue
        total += p.numel() * p.element_size()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: write a random one of --preset)")
    parser.add_argument("--preset", default="asr-0.6b")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 repeats: checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.preset, args.repeats = "tiny-asr", 2

    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration
    from transformers import AutoConfig, AutoModel

    from qwen_asr.core.transformers_backend import Qwen3ASRConfig
    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.audio.frontend import log_mel

    AutoConfig.register("qwen3_asr", Qwen3ASRConfig)
    AutoModel.register(Qwen3ASRConfig, Qwen3ASRForConditionalGeneration)
    folder = checkpoint(args.preset, args.model)
    torch.manual_seed(0)
    official = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    ours = {"float32": load_model(folder, LoadOptions(dtype="float32", encoder_attention="global"))}
    rows, record = [], {"preset": args.preset, "repeats": args.repeats, "rows": []}

    def add(what, t_official, t_ours):
        ratio = t_official / t_ours if t_ours else float("nan")
        rows.append([what, t_official * 1e3, t_ours * 1e3, ratio])
        record["rows"].append({"what": what, "official_ms": t_official * 1e3, "ours_ms": t_ours * 1e3,
                               "official_over_ours": ratio})

    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for seconds in (10, 20):
            mel = log_mel(torch.from_numpy((0.1 * rng.standard_normal(16000 * seconds)).astype(np.float32)))
            tower = official.thinker.audio_tower
            t_off, t_ours = paired_medians(lambda: tower(mel, feature_lens=torch.tensor([mel.shape[-1]])),
                                           lambda: ours["float32"].encode_audio([mel]), args.repeats)
            add(f"encoder {seconds} s audio", t_off, t_ours)

        # Prefill: a 10 s prompt (130 audio tokens + 20 text) through the decoder and the head.
        model = ours["float32"]
        hidden = model.dims.text.hidden_size
        embeds = torch.randn(1, 150, hidden) * 0.1

        def official_prefill():
            return official.thinker(inputs_embeds=embeds, use_cache=True,
                                    attention_mask=torch.ones(1, 150, dtype=torch.long))

        def ours_prefill():
            return model(embeds, model.new_cache(1, 160))

        t_off, t_ours = paired_medians(official_prefill, ours_prefill, args.repeats)
        add("prefill 150 positions", t_off, t_ours)

        # One decode step after a 150-position prompt.
        token = torch.tensor([[1234]])
        past = official_prefill().past_key_values

        def official_step():
            past.crop(150)
            return official.thinker(input_ids=token, past_key_values=past, use_cache=True,
                                    attention_mask=torch.ones(1, 151, dtype=torch.long),
                                    cache_position=torch.tensor([150]))

        step_times = {}
        for dtype in ("float32", "bfloat16", "int8"):
            if dtype not in ours:
                options = (LoadOptions(quantize="int8", encoder_attention="global") if dtype == "int8"
                           else LoadOptions(dtype=dtype, encoder_attention="global"))
                ours[dtype] = load_model(folder, options)
            m = ours[dtype]
            cache = m.new_cache(1, 160)
            m(embeds.to(m.dtype), cache)

            def ours_step(m=m, cache=cache):
                cache.truncate(150)
                cache.reserve(1)
                return m(m.embed(token), cache)

            if dtype == "float32":
                t_off, step_times[dtype] = paired_medians(official_step, ours_step, args.repeats * 3)
            else:
                step_times[dtype], _ = median_time(ours_step, args.repeats * 3)
        add("decode step (float32)", t_off, step_times["float32"])

    print_table("ours vs official (CPU, medians in ms; ratio = official / ours)",
                ["what", "official ms", "ours ms", "ratio"], rows)

    bandwidth = copy_bandwidth()
    floor_rows = []
    record["copy_bandwidth_gb_s"] = bandwidth / 1e9
    record["decode_floor"] = []
    for dtype, t in step_times.items():
        weights = weight_bytes_per_step(ours[dtype])
        floor = weights / bandwidth
        floor_rows.append([dtype, weights / 1e9, floor * 1e3, t * 1e3, t / floor])
        record["decode_floor"].append({"dtype": dtype, "weight_gb": weights / 1e9, "floor_ms": floor * 1e3,
                                       "measured_ms": t * 1e3, "measured_over_floor": t / floor})
    print_table(f"decode step vs memory-bandwidth floor (copy bandwidth {bandwidth / 1e9:.1f} GB/s copied)",
                ["dtype", "weights GB", "floor ms", "measured ms", "x floor"], floor_rows)
    write_results("model" if not args.quick else "model-quick", record)


if __name__ == "__main__":
    main()
