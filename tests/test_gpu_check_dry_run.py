"""The GPU check's dry run on the CPU, as the GPU machine will run it.

The device image (Python 3.12, CUDA torch, no package index) holds some packages and lacks
others; what it lacks travels as the wheels of ``benchmarks/gpu_wheels.txt``. Here a clean
virtualenv (``--without-pip``, no system site-packages) gets ONLY the image's packages that
matter, CPU torch standing in for the CUDA build: they are linked from the running venv
through one ``.pth`` folder of symbolic links (each distribution's top-level files from its
RECORD, with its requirements, recursively), which costs no download and no copy of torch.
The wheels of the list are downloaded by ``fetch_gpu_wheels.sh`` for THIS Python (cp311
here; the device takes cp312 builds of the same pins) and installed by ``gpu_check.sh`` into
a target folder, as on the device. Then ``gpu_check.sh --device cpu --preset tiny-asr
--quick`` must finish with every stage ok; and with a name removed from the list, the
imports stage must name the missing module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What the device image holds that the service and gpu_check.py use (the device tool's KINDS.md
# lists the image's packages); their requirements come along. pip installs the carried wheels.
IMAGE_PACKAGES = ["torch", "numpy", "grpcio", "protobuf", "aiohttp", "tokenizers", "safetensors", "huggingface-hub",
                  "prometheus-client", "pytest", "pytest-timeout", "pip"]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions of ``names`` and of their requirements (markers evaluated)."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement this platform does not install (e.g. only on another OS)
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _link_packages(dists: list[metadata.Distribution], folder: Path) -> None:
    folder.mkdir(parents=True)
    for dist in dists:
        base = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            target = folder / top
            if not target.exists() and (base / top).exists():
                target.symlink_to(base / top)


@pytest.fixture(scope="module")
def dry_python(tmp_path_factory) -> Path:
    """A clean venv whose only packages are the device image's (linked in through a .pth file)."""
    base = tmp_path_factory.mktemp("device-image")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    missing = [n for n in IMAGE_PACKAGES if not _installed(n)]
    assert not missing, f"the test venv lacks {missing} (bash .ci/run installs them)"
    _link_packages(_closure(IMAGE_PACKAGES), base / "image-packages")
    (Path(site) / "device-image.pth").write_text(str(base / "image-packages") + "\n")
    return python


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def _fetch(dest: Path, wheel_list: Path | None = None) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    command = ["bash", str(ROOT / "benchmarks" / "fetch_gpu_wheels.sh"), "--python-version", version,
               "--dest", str(dest)]
    if wheel_list is not None:
        command += ["--list", str(wheel_list)]
    proc = subprocess.run(command, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"downloading the wheels from PyPI failed:\n{proc.stdout}\n{proc.stderr}"


def _gpu_check(python: Path, wheels: Path, tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHON=str(python), WHEELS=str(wheels), GPU_CHECK_SITE=str(tmp / "site"), OUT=str(out))
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=600)
    return proc, out


def test_the_dry_run_passes_every_stage_with_only_the_image_packages_and_the_wheels(dry_python, tmp_path):
    # The venv really is clean: the service's own dependencies are not there before the wheels.
    bare = subprocess.run([str(dry_python), "-c", "import soxr"], capture_output=True, text=True)
    assert bare.returncode != 0 and "soxr" in bare.stderr
    _fetch(tmp_path / "whl")
    proc, out = _gpu_check(dry_python, tmp_path / "whl", tmp_path, "--device", "cpu", "--preset", "tiny-asr", "--quick")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    record = json.loads((out / "gpu_check.json").read_text())
    stages = record["stages"]
    assert list(stages) == ["environment", "imports", "checkpoint", "cuda_tests", "bf16_vs_fp32", "graphs_vs_eager",
                            "latency", "speakers", "capacity", "profile"]
    failed = {name: s.get("error") for name, s in stages.items() if s["status"] != "ok"}
    assert not failed, failed
    assert stages["environment"]["result"]["soxr"] != "absent"
    # The carried wheels were imported from the target folder, not from anywhere else.
    assert str(tmp_path / "site") in log or (tmp_path / "site" / "soxr").exists()
    speakers = stages["speakers"]["result"]["rows"]
    assert [(r["device"], r["windows"]) for r in speakers] == [("cpu", 1), ("cpu", 23)]
    assert all(r["ms_per_window"] > 0 and r["streams_kept_up_with"] >= 0 for r in speakers)
    capacity = stages["capacity"]["result"]
    assert capacity["probes"] and capacity["capacity"] >= 0
    assert stages["profile"]["result"][str(record["options"]["profile_streams"])]["top_ops"]
    assert (out / "gpu_check.txt").read_text().count(" ok ") == len(stages)
    assert (out / "profiles.txt").exists() and (out / "cuda_tests.log").exists()


def test_a_wheel_missing_from_the_list_is_named_by_the_imports_stage(dry_python, tmp_path):
    lines = (ROOT / "benchmarks" / "gpu_wheels.txt").read_text().splitlines()
    assert any(line.startswith("soxr==") for line in lines)
    short = tmp_path / "gpu_wheels.txt"
    short.write_text("\n".join(line for line in lines if not line.startswith("soxr==")) + "\n")
    _fetch(tmp_path / "whl", short)
    proc, out = _gpu_check(dry_python, tmp_path / "whl", tmp_path, "--device", "cpu", "--stages",
                           "environment,imports")
    assert proc.returncode != 0
    imports = json.loads((out / "gpu_check.json").read_text())["stages"]["imports"]
    assert imports["status"] == "FAILED"
    assert "missing module soxr" in imports["error"], imports["error"]
    assert "missing module soxr" in proc.stdout
