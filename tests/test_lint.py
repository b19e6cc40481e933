"""The guard rails, run with the tests: ruff (style and bug patterns), import-linter (the layers:
core <- ml <- app <- gui, commands; no Qt or torch in core, no Qt in app) and mypy (core, fully
annotated).

Their configuration is in pyproject.toml. installer/bootstrap.sh installs the ``test`` extra,
which lists the three tools, so they run wherever the tests do; a test is skipped, saying so,
only where its tool is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    """The tool's executable: beside this Python (the venv) first, else on PATH."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' installs it)")
    return found


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # this checkout's code, not an installed copy
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_ruff() -> None:
    result = _run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."], timeout=120)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"


def test_import_contracts() -> None:
    result = _run([_tool("lint-imports"), "--no-cache"], timeout=120)
    assert result.returncode == 0, f"an import contract is broken:\n{result.stdout}{result.stderr}"


def test_mypy_core() -> None:
    result = _run([_tool("mypy"), "--no-incremental", "--cache-dir", os.devnull], timeout=300)
    assert result.returncode == 0, f"mypy (dermaseg_app/core):\n{result.stdout}{result.stderr}"
