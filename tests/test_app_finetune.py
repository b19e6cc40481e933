"""The Training tab's fine-tuning job (``app.finetune``), without a window: the hold-out rule (the
training engine's), the output checks, the gathering of the saved corrections, and the refusals
that come before any training."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.app.finetune import (
    MIN_FOR_VALIDATION,
    VAL_FRACTION,
    FinetuneError,
    FinetuneRequest,
    check_output,
    default_output,
    finetune_job,
    split_cases,
    training_cases,
)
from dermaseg_app.core.dataset import Case


def _cases(n: int) -> list[Case]:
    return [Case(Path(f"/x/img{i:02d}.png"), Path(f"/x/img{i:02d}_mask.png"), f"img{i:02d}") for i in range(n)]


def test_fewer_than_four_corrections_hold_none_out() -> None:
    for n in range(MIN_FOR_VALIDATION):
        train, val = split_cases(_cases(n))
        assert val == [] and len(train) == n


@pytest.mark.parametrize("n", [4, 9, 10, 25, 40])
def test_the_hold_out_is_the_training_engines_rule(n: int) -> None:
    from dermaseg_app.ml.training import holdout_indices

    cases = list(reversed(_cases(n)))  # the order given does not matter: sorted by stem
    train, val = split_cases(cases)
    ordered = sorted(cases, key=lambda c: c.stem)
    assert [c.stem for c in val] == [ordered[i].stem for i in holdout_indices(n, VAL_FRACTION, 0)]
    assert len(val) == max(1, round(n * VAL_FRACTION))
    assert sorted(c.stem for c in train + val) == [c.stem for c in ordered]
    assert split_cases(cases) == (train, val)  # the same every time


def test_default_output_is_new_and_in_the_project(tmp_path: Path) -> None:
    first = default_output(tmp_path, "slsnet isic/2017", when=0)
    assert first.parent == tmp_path / "models" and first.suffix == ".safetensors"
    assert first.name.startswith("slsnet_isic_2017-ft-")
    first.parent.mkdir()
    first.write_bytes(b"")
    second = default_output(tmp_path, "slsnet isic/2017", when=0)
    assert second != first and second.stem.endswith("-2")


def test_check_output_refuses_what_would_overwrite_a_model(tmp_path: Path) -> None:
    from dermaseg_app import paths

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"")
    with pytest.raises(FinetuneError, match="must end in .safetensors"):
        check_output(tmp_path / "new.pt", base)
    with pytest.raises(FinetuneError, match="never overwrites"):
        check_output(base, base)
    with pytest.raises(FinetuneError, match="shipped models folder"):
        check_output(paths.models_dir() / "new.safetensors", base)
    check_output(tmp_path / "out" / "new.safetensors", base)  # a new file in a new folder: fine
    assert (tmp_path / "out").is_dir() and not list((tmp_path / "out").iterdir())


def _corrected_folder(root: Path, names: list[str]):
    from dermaseg_app.core.project import Project
    from dermaseg_app.core.store import CorrectionStore

    root.mkdir(parents=True)
    project = Project.open_for(root)
    store = CorrectionStore(project)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    for name in names:
        cv2.imwrite(str(root / name), np.full((32, 32, 3), 100, np.uint8))
        store.save_correction(root / name, mask)
    return project


def test_training_cases_keep_two_folders_images_of_one_name_apart(tmp_path: Path) -> None:
    one = _corrected_folder(tmp_path / "one", ["a.png", "b.png"])
    two = _corrected_folder(tmp_path / "two", ["a.png"])
    alone = training_cases([one])
    assert sorted(c.stem for c in alone.cases) == ["a", "b"]
    both = training_cases([one, two])
    assert sorted(c.stem for c in both.cases) == ["b", "one__a", "two__a"]


def test_the_job_refuses_too_few_corrections_before_any_work(random_model: Path, tmp_path: Path) -> None:
    request = FinetuneRequest(base_model=random_model, cases=_cases(1), project_dir=tmp_path,
                              out=tmp_path / "models" / "new.safetensors")
    with pytest.raises(FinetuneError, match="at least 2"):
        next(finetune_job(None, request, threading.Event()))
    assert not (tmp_path / "models").exists() and not (tmp_path / "training").exists()
