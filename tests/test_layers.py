"""The house's layers: the import contracts of pyproject.toml hold, and they can fail.

`lint-imports` (import-linter) checks that layers import only downward (server ->
protocols -> session -> engine / audio / text -> model), that the client imports nothing of
the server, and that no package's modules import each other in a circle. The planted
imports show that each contract breaks on the import it is there to catch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(source_root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the packages under ``source_root`` (with its copy of pyproject.toml)."""
    env = dict(os.environ, PYTHONPATH=f"{source_root / 'service'}{os.pathsep}{source_root / 'client'}")
    return subprocess.run([str(LINT), "--no-cache"], cwd=source_root, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the packages and pyproject.toml to plant imports in."""
    for part in ("service", "client"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(path: Path, line: str) -> None:
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text, path
    path.write_text(text.replace(marker, marker + line + "\n", 1))


def test_the_contracts_hold():
    assert LINT.exists(), "import-linter is not installed (pip install -e '.[test]')"
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize("module, line, contract", [
    # the model reaching up to the server: the layers contract
    ("service/qwen3_asr_stream/model/config.py", "from ..server import options as _planted",
     "Layers import only downward"),
    # the session core reaching up to a protocol adapter
    ("service/qwen3_asr_stream/session/core.py", "from ..protocols import grpc_stream as _planted",
     "Layers import only downward"),
    # the client importing the service
    ("client/qwen3_asr_client/api.py", "import qwen3_asr_stream.engine.options as _planted",
     "The client needs no server"),
    # two engine modules importing each other
    ("service/qwen3_asr_stream/engine/options.py", "from . import policy as _planted",
     "No import cycles"),
])
def test_a_planted_import_breaks_its_contract(tree, module, line, contract):
    plant(tree / module, line)
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    assert "Broken contracts" in result.stdout, result.stdout
    assert contract in result.stdout.split("Broken contracts", 1)[1], result.stdout
