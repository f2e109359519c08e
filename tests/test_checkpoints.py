"""Random-weight checkpoints in the published layout, checked against the official package.

The writer is ``qwen3_asr_stream.testing.checkpoints``; the official ``qwen-asr`` package
(the oracle) must load what it writes exactly as it loads the released checkpoints.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from qwen3_asr_stream.testing import checkpoints as ck  # noqa: E402

EXPECTED_FILES = {
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
}
PROMPT = (
    "<|im_start|>system\nctx<|im_end|>\n<|im_start|>user\n"
    "<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\n"
)
PUBLISHED_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|audio_start|>": 151669,
    "<|audio_end|>": 151670,
    "<non_speech>": 151675,
    "<|audio_pad|>": 151676,
    "<asr_text>": 151704,
    "<timestamp>": 151705,
}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory):
    return ck.write_checkpoint(tmp_path_factory.mktemp("tiny_asr"), ck.TINY_ASR, seed=0)


@pytest.fixture(scope="module")
def aligner_dir(tmp_path_factory):
    return ck.write_checkpoint(tmp_path_factory.mktemp("tiny_aligner"), ck.TINY_ALIGNER, seed=3)


@pytest.fixture(scope="module")
def oracle():
    qwen_asr = pytest.importorskip("qwen_asr")
    from transformers import AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    # Importing qwen_asr registers the official classes with the Auto* factories, as
    # inference/qwen3_asr.py does for its own from_pretrained.
    return qwen_asr, AutoModel


@pytest.fixture(scope="module")
def asr_model(oracle, asr_dir):
    qwen_asr, _ = oracle
    return qwen_asr.Qwen3ASRModel.from_pretrained(str(asr_dir), dtype=torch.float32, max_new_tokens=16)


def _file_tensors(folder) -> dict:
    tensors = {}
    for path in sorted(folder.glob("model*.safetensors")):
        tensors.update(safetensors_torch.load_file(str(path)))
    return tensors


def _load_and_compare(AutoModel, folder, *, tied: bool):
    model, info = AutoModel.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [], info
    assert info["mismatched_keys"] == [] and info["error_msgs"] == [], info
    files = _file_tensors(folder)
    state = model.state_dict()
    if tied:
        assert "thinker.lm_head.weight" not in files
        assert set(state) == set(files) | {"thinker.lm_head.weight"}
        torch.testing.assert_close(state["thinker.lm_head.weight"], files["thinker.model.embed_tokens.weight"].float(), rtol=0, atol=0)
    else:
        assert set(state) == set(files)
    for name, value in files.items():
        torch.testing.assert_close(state[name], value.float(), rtol=0, atol=0, msg=name)
    return model


# ------------------------------------------------------------------------------ layout


def test_folder_holds_exactly_the_published_files(asr_dir):
    names = {p.name for p in asr_dir.iterdir()}
    assert names == EXPECTED_FILES | {"model.safetensors"}
    assert "tokenizer.json" not in names


def test_config_values(asr_dir, aligner_dir):
    cfg = json.loads((asr_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen3_asr"
    assert cfg["architectures"] == ["Qwen3ASRForConditionalGeneration"]
    assert len(cfg["support_languages"]) == 30 and cfg["support_languages"][:2] == ["Chinese", "English"]
    th = cfg["thinker_config"]
    assert th["model_type"] == "qwen3_asr_thinker"
    assert (th["audio_token_id"], th["audio_start_token_id"], th["audio_end_token_id"]) == (151676, 151669, 151670)
    a, t = th["audio_config"], th["text_config"]
    for key, value in dict(num_mel_bins=128, n_window=50, n_window_infer=800, conv_chunksize=500,
                           max_source_positions=1500, activation_function="gelu", scale_embedding=False).items():
        assert a[key] == value, key
    for key in ("encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model", "output_dim",
                "downsample_hidden_size"):
        assert key in a
    assert t["vocab_size"] == 151936 and t["tie_word_embeddings"] is True
    assert t["rope_theta"] == 1e6 and t["rms_norm_eps"] == 1e-6 and t["max_position_embeddings"] == 65536
    assert t["hidden_act"] == "silu" and t["attention_bias"] is False
    rope = t["rope_scaling"]
    assert rope["rope_type"] == "default" and rope["interleaved"] and rope["mrope_interleaved"]
    assert sum(rope["mrope_section"]) == t["head_dim"] // 2
    assert a["output_dim"] == t["hidden_size"]

    al = json.loads((aligner_dir / "config.json").read_text())
    assert al["timestamp_token_id"] == 151705 and al["timestamp_segment_time"] == 80
    assert al["thinker_config"]["model_type"] == "qwen3_forced_aligner"
    assert al["thinker_config"]["classify_num"] == 5000
    assert al["thinker_config"]["text_config"]["vocab_size"] == 152064
    assert al["thinker_config"]["text_config"]["tie_word_embeddings"] is False

    gen = json.loads((asr_dir / "generation_config.json").read_text())
    assert gen["do_sample"] is False and gen["eos_token_id"] == [151643, 151645] and gen["pad_token_id"] == 151643
    assert "repetition_penalty" not in gen
    pre = json.loads((asr_dir / "preprocessor_config.json").read_text())
    assert pre["feature_size"] == 128 and pre["processor_class"] == "Qwen3ASRProcessor"


def test_released_sizes():
    """The full-size presets carry the published sizes (checked on the plan; nothing written)."""
    def count(spec, prefix=""):
        return sum(math.prod(t.shape) for t in ck.tensor_plan(spec) if t.name.startswith(prefix))

    assert 0.77e9 < count(ck.ASR_0_6B) < 0.80e9
    assert 0.17e9 < count(ck.ASR_0_6B, "thinker.audio_tower.") < 0.20e9
    assert 0.29e9 < count(ck.ASR_1_7B, "thinker.audio_tower.") < 0.32e9
    al = {t.name: t.shape for t in ck.tensor_plan(ck.ALIGNER_0_6B)}
    assert al["thinker.lm_head.weight"] == (5000, 1024)
    assert al["thinker.model.embed_tokens.weight"] == (152064, 1024)
    assert al["thinker.audio_tower.conv_out.weight"] == (1024, 480 * 16)
    asr = {t.name for t in ck.tensor_plan(ck.ASR_1_7B)}
    assert "thinker.lm_head.weight" not in asr
    for spec in (ck.ASR_0_6B, ck.ASR_1_7B, ck.ALIGNER_0_6B):
        cfg = ck.build_config(spec)
        assert cfg["thinker_config"]["text_config"]["rope_scaling"]["mrope_section"] == [24, 20, 20]


def test_tokenizer_files(asr_dir):
    vocab = json.loads((asr_dir / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab.values()) == list(range(151643))
    byte_symbols = [s for s, i in vocab.items() if i < 256]
    assert all(len(s) == 1 for s in byte_symbols)
    lines = (asr_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#version")
    merges = [tuple(line.split(" ")) for line in lines[1:]]
    assert len(merges) >= 300
    for a, b in merges:
        assert a in vocab and b in vocab and a + b in vocab
    cfg = json.loads((asr_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = {int(k): v["content"] for k, v in cfg["added_tokens_decoder"].items()}
    assert sorted(added) == list(range(151643, 151706))
    for token, idx in PUBLISHED_IDS.items():
        assert added[idx] == token
    assert cfg["tokenizer_class"] == "Qwen2Tokenizer"
    assert cfg["audio_token"] == "<|audio_pad|>"


def test_sharding_and_seed(tmp_path):
    one = ck.write_checkpoint(tmp_path / "one", ck.TINY_ASR, seed=5)
    many = ck.write_checkpoint(tmp_path / "many", ck.TINY_ASR, seed=5, max_shard_bytes=4 << 20)
    shards = sorted(p.name for p in many.glob("model-*.safetensors"))
    assert len(shards) > 2 and not (many / "model.safetensors").exists()
    n = len(shards)
    assert shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
    index = json.loads((many / "model.safetensors.index.json").read_text())
    a, b = _file_tensors(one), _file_tensors(many)
    assert set(index["weight_map"]) == set(a) == set(b)
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in a.values())
    for name in a:
        assert torch.equal(a[name], b[name]), name
    other = _file_tensors(ck.write_checkpoint(tmp_path / "other", ck.TINY_ASR, seed=6))
    assert not torch.equal(other["thinker.model.norm.weight"], a["thinker.model.norm.weight"])


def test_bfloat16_and_cli(tmp_path, capsys):
    assert ck._main(["--preset", "tiny-aligner", "--out", str(tmp_path / "bf"), "--dtype", "bfloat16", "--seed", "1"]) == 0
    assert "tiny-aligner" in capsys.readouterr().out
    tensors = _file_tensors(tmp_path / "bf")
    assert {v.dtype for v in tensors.values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "bf" / "config.json").read_text())["dtype"] == "bfloat16"


# ------------------------------------------------------------------------------ oracle


@pytest.mark.oracle
def test_oracle_loads_tiny_asr_exactly(oracle, asr_dir):
    _, AutoModel = oracle
    model = _load_and_compare(AutoModel, asr_dir, tied=True)
    th = model.thinker
    assert th.lm_head.weight.data_ptr() == th.model.embed_tokens.weight.data_ptr()
    assert th.lm_head.out_features == 151936


@pytest.mark.oracle
def test_oracle_loads_alt_and_sharded(oracle, tmp_path):
    _, AutoModel = oracle
    folder = ck.write_checkpoint(tmp_path / "alt", ck.TINY_ASR_ALT, seed=2, max_shard_bytes=6 << 20)
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    model = _load_and_compare(AutoModel, folder, tied=True)
    attn = model.thinker.model.layers[0].self_attn
    assert (attn.head_dim, model.config.thinker_config.text_config.num_attention_heads) == (8, 8)
    assert model.thinker.audio_tower.layers[0].self_attn.num_heads == 2


@pytest.mark.oracle
def test_oracle_loads_tiny_aligner_exactly(oracle, aligner_dir):
    _, AutoModel = oracle
    model = _load_and_compare(AutoModel, aligner_dir, tied=False)
    assert model.config.thinker_config.model_type == "qwen3_forced_aligner"
    assert tuple(model.thinker.lm_head.weight.shape) == (5000, 64)
    assert model.config.timestamp_token_id == 151705


@pytest.mark.oracle
def test_oracle_prompt(asr_model):
    assert asr_model._build_text_prompt("ctx", None) == PROMPT
    forced = asr_model._build_text_prompt("", "English")
    assert forced.endswith("<|im_start|>assistant\nlanguage English<asr_text>")
    assert forced.startswith("<|im_start|>system\n<|im_end|>\n")


@pytest.mark.oracle
def test_oracle_tokenizer(asr_model):
    processor = asr_model.processor
    tok = processor.tokenizer
    for token, idx in PUBLISHED_IDS.items():
        assert tok.convert_tokens_to_ids(token) == idx, token
    assert (processor.audio_token, processor.audio_bos_token, processor.audio_eos_token) == (
        "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>")
    text = "The weather today is clear. 今天天气很好"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(tok.encode(" weather")) > 1 and len(tok.encode(" the")) == 1
    # Every id decodes; the transcript markers survive skip_special_tokens.
    rng = np.random.default_rng(0)
    assert isinstance(tok.decode(rng.integers(0, 151643, 200).tolist()), str)
    assert tok.decode([tok.convert_tokens_to_ids("<asr_text>"), 151645], skip_special_tokens=True) == "<asr_text>"


@pytest.mark.oracle
def test_oracle_transcribe_runs_and_tokens_vary(asr_model):
    wavs = [(np.random.default_rng(seed).standard_normal(16000 * 2) * 0.1).astype(np.float32) for seed in range(3)]
    result = asr_model.transcribe(audio=(wavs[0], 16000))
    assert len(result) == 1 and isinstance(result[0].text, str)
    outputs = asr_model._infer_asr([""] * 3, wavs, [None] * 3)  # raw decoded text, one per clip
    assert len(outputs) == 3 and any(o for o in outputs)
    # Greedy decoding of the random model neither stops at once nor repeats one token.
    wav = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    inputs = asr_model.processor(text=[asr_model._build_text_prompt("", None)], audio=[wav],
                                 return_tensors="pt", padding=True)
    new = asr_model.model.generate(**inputs, max_new_tokens=16).sequences[0, inputs["input_ids"].shape[1]:]
    assert len(set(new.tolist())) > 3


@pytest.mark.oracle
def test_oracle_aligner_runs(oracle, aligner_dir):
    qwen_asr, _ = oracle
    aligner = qwen_asr.Qwen3ForcedAligner.from_pretrained(str(aligner_dir), dtype=torch.float32)
    wav = (np.random.default_rng(1).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    result = aligner.align(audio=(wav, 16000), text="hello world", language="English")
    assert len(result) == 1 and [item.text for item in result[0]] == ["hello", "world"]
    for item in result[0]:
        assert 0 <= item.start_time <= item.end_time <= 5000 * 0.08
