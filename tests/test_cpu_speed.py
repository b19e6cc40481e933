"""The CPU precision choice (ml/cpu_speed.py): bf16 where the CPU has bf16 units, and on AMX never
compiled together with bf16 autocast (nan gradients seen there with torch 2.13)."""

from __future__ import annotations

import pytest
import torch

from dermaseg_app.ml import cpu_speed
from dermaseg_app.ml.training.config import TrainConfig
from dermaseg_app.ml.training.run import _device


@pytest.fixture
def units(monkeypatch: pytest.MonkeyPatch):
    def set_units(value: str | None) -> None:
        monkeypatch.setattr(cpu_speed, "bf16_units", lambda: value)
    return set_units


@pytest.mark.parametrize("value", [None, "AVX512-BF16", "AMX"])
def test_autocast_dtype_follows_the_units(units, value) -> None:
    units(value)
    assert cpu_speed.autocast_dtype("fp32") is None
    assert cpu_speed.autocast_dtype("bf16") is torch.bfloat16
    assert cpu_speed.autocast_dtype("auto") is (torch.bfloat16 if value else None)
    with pytest.raises(ValueError):
        cpu_speed.autocast_dtype("fp16")


@pytest.mark.parametrize("value", [None, "AVX512-BF16", "AMX"])
@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_eager_runs_keep_their_precision(units, value, precision) -> None:
    units(value)
    assert cpu_speed.compiled_autocast(precision, False) == (cpu_speed.autocast_dtype(precision), False, None)


def test_compile_with_bf16_is_kept_where_there_is_no_amx(units) -> None:
    units("AVX512-BF16")
    assert cpu_speed.compiled_autocast("auto", True) == (torch.bfloat16, True, None)
    assert cpu_speed.compiled_autocast("bf16", True) == (torch.bfloat16, True, None)
    units(None)
    assert cpu_speed.compiled_autocast("auto", True) == (None, True, None)


def test_amx_runs_bf16_eagerly_and_compiles_float32_only_when_asked(units) -> None:
    units("AMX")
    for precision in ("auto", "bf16"):
        dtype, compile_, notice = cpu_speed.compiled_autocast(precision, True)
        assert (dtype, compile_) == (torch.bfloat16, False) and "--compile ignored" in notice and "AMX" in notice
    assert cpu_speed.compiled_autocast("fp32", True) == (None, True, None)


def test_the_engine_applies_the_rule_and_says_so(units) -> None:
    units("AMX")
    cfg = TrainConfig(device="cpu", compile=True, precision="bf16")
    _, notice, autocast = _device(cfg)
    assert autocast is torch.bfloat16 and cfg.compile is False and "AMX" in notice
    cfg = TrainConfig(device="cpu", compile=True, precision="fp32")
    _, notice, autocast = _device(cfg)
    assert autocast is None and cfg.compile is True and not notice
