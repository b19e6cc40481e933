"""installer/bootstrap.sh installs the optional runtimes (pyproject extras onnx, openvino) one at a
time, and a runtime that cannot be installed never fails the install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _fake_venv(tmp_path: Path, failing_extra: str | None) -> tuple[dict, Path, Path]:
    """A venv whose python records every pip call, and fails the install of ``failing_extra``."""
    from test_installer import _bootstrap_env, _sonames

    env, _calls, venv = _bootstrap_env(tmp_path, _sonames())
    (venv / ".dermaseg-stamp").write_text("stale\n")  # so that the install part runs
    calls = tmp_path / "python-calls.txt"
    fail = f'case "$*" in *"[{failing_extra}]"*) exit 1;; esac\n' if failing_extra else ""
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n{fail}exit 0\n')
    return env, calls, venv


def test_each_extra_is_installed_after_dermaseg(tmp_path):
    env, calls, venv = _fake_venv(tmp_path, None)
    run = subprocess.run(["bash", str(ROOT / "installer" / "bootstrap.sh")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    installs = [line for line in calls.read_text().splitlines() if " install -e " in line]
    assert [line.rsplit("[", 1)[1] for line in installs] == ["test]", "onnx]", "openvino]"]
    assert "could not be installed" not in run.stderr
    assert (venv / ".dermaseg-stamp").read_text().strip() != "stale"


def test_a_runtime_without_a_wheel_does_not_fail_the_install(tmp_path):
    env, calls, venv = _fake_venv(tmp_path, "openvino")
    run = subprocess.run(["bash", str(ROOT / "installer" / "bootstrap.sh")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "optional 'openvino' runtime could not be installed" in run.stderr
    assert "'onnx'" not in run.stderr
    assert "-m dermaseg_app.ml.fast_attention" in calls.read_text()  # the steps after it still ran
    assert (venv / ".dermaseg-stamp").read_text().strip() != "stale"


def test_no_extras_when_asked_for_none(tmp_path):
    env, calls, _venv = _fake_venv(tmp_path, None)
    env["DERMASEG_EXTRAS"] = ""
    run = subprocess.run(["bash", str(ROOT / "installer" / "bootstrap.sh")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert [line for line in calls.read_text().splitlines() if " install -e " in line][-1].endswith("[test]")
