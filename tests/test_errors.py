"""One root for the errors a user can cause: every ``(path, reason)`` exception is a DermaSegError."""

from __future__ import annotations

import ast
import errno
import pickle
from pathlib import Path

import pytest

from dermaseg_app.core.atomic import AtomicWriteError
from dermaseg_app.core.errors import DermaSegError
from dermaseg_app.core.imageio import ImageReadError
from dermaseg_app.core.project import ProjectError, ProjectNotWritable, ProjectReadOnly
from dermaseg_app.core.store import GroundTruthProtected, StoreError
from dermaseg_app.ml.data import DataError
from dermaseg_app.ml.header import ModelHeaderError
from dermaseg_app.ml.weights import WeightsError

PACKAGE = Path(__file__).resolve().parents[1] / "dermaseg_app"


@pytest.mark.parametrize("cls", [DataError, ImageReadError, ModelHeaderError, ProjectError, ProjectNotWritable,
                                 ProjectReadOnly, StoreError, GroundTruthProtected, WeightsError])
def test_path_reason_errors_share_the_root(cls: type[DermaSegError]) -> None:
    err = cls("some/folder/file.png", "it is broken")
    assert isinstance(err, DermaSegError)
    assert err.path == Path("some/folder/file.png") and err.reason == "it is broken"
    assert str(Path("some/folder/file.png")) in str(err) and "it is broken" in str(err)
    back = pickle.loads(pickle.dumps(err))  # crosses process boundaries (workers, forkserver)
    assert type(back) is cls and str(back) == str(err) and back.path == err.path


def test_data_error_is_still_a_value_error() -> None:
    assert isinstance(DataError("x", "y"), ValueError)
    assert str(DataError("a/b.npz", "bad")) == f"{Path('a/b.npz')}: bad"


def test_atomic_write_error_is_an_os_error_too() -> None:
    err = AtomicWriteError("out/mask.png", "the disk is full", errno.ENOSPC)
    assert isinstance(err, DermaSegError) and isinstance(err, OSError)
    assert err.errno == errno.ENOSPC and err.filename == "out/mask.png"
    assert str(err) == f"cannot write {Path('out/mask.png')}: the disk is full"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is AtomicWriteError and back.errno == errno.ENOSPC and str(back) == str(err)


def _is_exception(cls: ast.ClassDef) -> bool:
    names = [cls.name] + [ast.unparse(b) for b in cls.bases]
    return any(n.endswith(("Error", "Exception")) for n in names)


def _assigns_path_and_reason(cls: ast.ClassDef) -> bool:
    if not _is_exception(cls):
        return False
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            targets = {t.attr for n in ast.walk(node) if isinstance(n, ast.Assign)
                       for t in n.targets if isinstance(t, ast.Attribute)}
            return {"path", "reason"} <= targets
    return False


def test_no_other_path_reason_exception_classes() -> None:
    """Only DermaSegError (and AtomicWriteError, which also sets OSError's errno) store
    ``path``/``reason`` themselves; every other such error inherits them."""
    found = set()
    for file in PACKAGE.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and _assigns_path_and_reason(node):
                found.add(f"{file.relative_to(PACKAGE).as_posix()}:{node.name}")
    assert found == {"core/errors.py:DermaSegError", "core/atomic.py:AtomicWriteError"}
