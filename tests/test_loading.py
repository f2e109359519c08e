"""Checkpoint loading: folders, shards, dtypes, and a clear error for each way a checkpoint can be wrong."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen3_asr_stream.checkpoint import CheckpointError, LoadOptions, load_model, resolve
from qwen3_asr_stream.model.config import ModelKind
from qwen3_asr_stream.testing.checkpoints import TINY_ASR, write_checkpoint


@pytest.fixture()
def asr_copy(checkpoints, tmp_path):
    folder = tmp_path / "asr"
    shutil.copytree(checkpoints["asr"], folder)
    return folder


def test_loads_asr_and_aligner_with_every_size_from_config(checkpoints):
    asr = load_model(checkpoints["asr"])
    aligner = load_model(checkpoints["aligner"])
    config = json.loads((checkpoints["asr"] / "config.json").read_text())
    text = config["thinker_config"]["text_config"]
    assert asr.dims.kind is ModelKind.ASR and aligner.dims.kind is ModelKind.ALIGNER
    assert asr.dims.text.hidden_size == text["hidden_size"]
    assert asr.dims.text.num_key_value_heads == text["num_key_value_heads"]
    assert asr.thinker.lm_head.weight.shape[0] == text["vocab_size"]
    assert aligner.thinker.lm_head.weight.shape[0] == 5000
    # Tied embeddings: the head is the embedding matrix itself.
    assert asr.thinker.lm_head.weight.data_ptr() == asr.thinker.model.embed_tokens.weight.data_ptr()
    assert aligner.thinker.lm_head.weight.data_ptr() != aligner.thinker.model.embed_tokens.weight.data_ptr()
    tensors = load_file(str(checkpoints["asr"] / "model.safetensors"))
    name = "thinker.model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(asr.state_dict()[name], tensors[name])


def test_sharded_checkpoint_loads_the_same_tensors(checkpoints, tmp_path):
    sharded = write_checkpoint(tmp_path / "sharded", TINY_ASR, seed=1, max_shard_bytes=4 << 20)
    assert (sharded / "model.safetensors.index.json").is_file()
    assert not (sharded / "model.safetensors").exists()
    a, b = load_model(checkpoints["asr"]), load_model(sharded)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtypes(checkpoints, dtype):
    model = load_model(checkpoints["asr"], LoadOptions(dtype=dtype))
    assert model.dtype == getattr(torch, dtype)
    assert model.thinker.model.layers[0].mlp.up_proj.weight.dtype == getattr(torch, dtype)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="dtype must be one of"):
        LoadOptions(dtype="float8")
    with pytest.raises(ValueError, match="is not a torch device"):
        LoadOptions(device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            LoadOptions(device="cuda")


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_missing_config(asr_copy):
    (asr_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_model(asr_copy)


def test_missing_weights_file(asr_copy):
    (asr_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor model.safetensors.index.json"):
        load_model(asr_copy)


def test_missing_shard(checkpoints, tmp_path):
    sharded = write_checkpoint(tmp_path / "sharded", TINY_ASR, seed=1, max_shard_bytes=4 << 20)
    victim = sorted(sharded.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"shards named in model.safetensors.index.json are missing: {victim.name}"):
        load_model(sharded)


def test_wrong_model_type(asr_copy):
    config = json.loads((asr_copy / "config.json").read_text())
    config["model_type"] = "whisper"
    (asr_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type is 'whisper', expected 'qwen3_asr'"):
        load_model(asr_copy)


def test_size_missing_from_config(asr_copy):
    config = json.loads((asr_copy / "config.json").read_text())
    del config["thinker_config"]["text_config"]["num_key_value_heads"]
    (asr_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'thinker_config.text_config.num_key_value_heads' is missing"):
        load_model(asr_copy)


def test_missing_tensor(asr_copy):
    tensors = load_file(str(asr_copy / "model.safetensors"))
    del tensors["thinker.model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, str(asr_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensors \(1\): thinker.model.layers.1.mlp.down_proj.weight"):
        load_model(asr_copy)


def test_unexpected_tensor(asr_copy):
    tensors = load_file(str(asr_copy / "model.safetensors"))
    tensors["thinker.model.layers.9.extra.weight"] = torch.zeros(3)
    save_file(tensors, str(asr_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected tensors \(1\): thinker.model.layers.9.extra.weight"):
        load_model(asr_copy)


def test_wrong_shape(asr_copy):
    tensors = load_file(str(asr_copy / "model.safetensors"))
    name = "thinker.audio_tower.conv_out.weight"
    tensors[name] = torch.zeros(tensors[name].shape[0], tensors[name].shape[1] + 1)
    save_file(tensors, str(asr_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape mismatches: thinker.audio_tower.conv_out.weight: file \(32, 129\)"):
        load_model(asr_copy)


def test_hub_repo_offline_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="hf download Qwen/Qwen3-ASR-0.6B"):
        resolve("Qwen/Qwen3-ASR-0.6B")
