"""The committed generated code matches protos/ (and the check can fail)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) generates the code")

REPO = Path(__file__).resolve().parent.parent
GENERATE = REPO / "protos" / "generate.py"
COMMITTED = REPO / "client" / "qwen3_asr_client" / "proto"


def run_generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(GENERATE), *args], capture_output=True, text=True, timeout=60
    )


def modified_proto_root(tmp_path: Path) -> Path:
    root = tmp_path / "protos"
    shutil.copytree(REPO / "protos", root, ignore=shutil.ignore_patterns("__pycache__"))
    proto = root / "asr" / "v1" / "asr.proto"
    text = proto.read_text()
    anchor = "  int32 end_ms = 3;\n"
    assert anchor in text
    proto.write_text(text.replace(anchor, anchor + "  float added_for_the_test = 99;\n"))
    return root


def test_committed_code_is_fresh():
    result = run_generate("--check")
    assert result.returncode == 0, (
        "generated code is stale: run `python protos/generate.py` and commit\n" + result.stderr
    )


def test_check_fails_when_proto_changes(tmp_path):
    result = run_generate("--check", "--proto-root", str(modified_proto_root(tmp_path)))
    assert result.returncode == 1
    assert "stale" in result.stderr and "asr_pb2.py" in result.stderr


def test_check_compares_descriptors_across_grpcio_tools_versions(tmp_path):
    # Code made by another grpcio-tools version differs in its text; the check then
    # compares descriptors: equal for the same .proto, different for a changed one.
    out = tmp_path / "proto"
    shutil.copytree(COMMITTED, out, ignore=shutil.ignore_patterns("__pycache__"))
    grpc_module = out / "asr" / "v1" / "asr_pb2_grpc.py"
    text = grpc_module.read_text()
    old_version = text.split("GRPC_GENERATED_VERSION = '")[1].split("'")[0]
    grpc_module.write_text(text.replace(f"GRPC_GENERATED_VERSION = '{old_version}'", "GRPC_GENERATED_VERSION = '1.0.0'"))

    same = run_generate("--check", "--out", str(out))
    assert same.returncode == 0, same.stderr
    assert "comparing descriptors only" in same.stderr

    changed = run_generate("--check", "--out", str(out), "--proto-root", str(modified_proto_root(tmp_path)))
    assert changed.returncode == 1
    assert "descriptor differs" in changed.stderr


def test_generation_is_reproducible(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert run_generate("--out", str(out)).returncode == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_package_exports_every_message_without_top_level_asr_module():
    from qwen3_asr_client import proto

    assert "asr" not in sys.modules  # the generated import was made relative
    descriptor = proto.asr_pb2.DESCRIPTOR
    for name in [*descriptor.message_types_by_name, *descriptor.enum_types_by_name]:
        assert getattr(proto, name) is getattr(proto.asr_pb2, name)
        assert name in proto.__all__
    assert descriptor.package == "asr.v1"
    assert hasattr(proto.asr_pb2_grpc, "SpeechRecognitionStub")
    request = proto.StreamingRecognizeRequest(control=proto.Control(kind=proto.Control.FINALIZE))
    assert request.WhichOneof("streaming_request") == "control"


def _generator_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("protos_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_gencode_is_the_declared_protobuf_floor(tmp_path):
    # Newer gencode refuses older protobuf runtimes: the committed code must be the
    # floor that pyproject.toml declares, and the check must notice when they part.
    generator = _generator_module()
    assert generator.gencode_version(COMMITTED) == generator.protobuf_floor() == "5.26.1"
    assert generator.check_floor() == []
    raised = tmp_path / "pyproject.toml"
    raised.write_text(generator.PYPROJECT.read_text().replace('"protobuf>=5.26.1,', '"protobuf>=6.31.1,'))
    problems = generator.check_floor(COMMITTED, raised)
    assert len(problems) == 1 and "protobuf 5.26.1 gencode" in problems[0] and "protobuf>=6.31.1" in problems[0]


def test_generated_code_runs_on_this_protobuf_runtime():
    # .ci/run runs this file on the newest protobuf (.venv) and on the declared floor (.venv-pb5).
    from google.protobuf import __version__ as runtime
    from qwen3_asr_client import proto

    result = proto.StreamingRecognitionResult(transcript="hi", words=[proto.WordInfo(word="hi", start_ms=1, end_ms=2)])
    assert proto.StreamingRecognitionResult.FromString(result.SerializeToString()) == result
    assert int(runtime.split(".")[0]) >= 5
