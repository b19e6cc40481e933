"""The project's own wiring: paths, the command's dispatch, and the bundled samples."""

import subprocess
import sys
from pathlib import Path

from dermaseg_app import cli, paths


def test_bundled_samples_have_isic_ground_truth(samples_dir, sample_gt_dir):
    images = sorted(samples_dir.glob("*.jpg"))
    assert len(images) >= 5
    for image in images:
        assert (sample_gt_dir / f"{image.stem}_segmentation.png").is_file()


def test_paths_point_into_the_repository(samples_dir):
    assert paths.samples_dir() == samples_dir
    assert paths.default_model_path().parent == paths.models_dir()


def test_help_lists_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "dermaseg" in out


# A child Python in which importing the blocked packages fails (a meta-path finder that raises
# ImportError, as on a machine without them), that imports every module of a package, sub-packages
# included, and reports what it could not import and which blocked packages got loaded anyway.
_IMPORT_ALL = """
import importlib, importlib.abc, json, pkgutil, sys
blocked = set(sys.argv[2].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
package = importlib.import_module(sys.argv[1])
names, failed = [package.__name__], {}
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    names.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
print(json.dumps({"modules": names, "failed": failed, "loaded": loaded}))
"""


def _import_all(package: str, blocked: tuple[str, ...]) -> dict:
    import json

    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, package, ",".join(blocked)],
                            capture_output=True, text=True, timeout=300, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_imports_without_qt_and_torch():
    """Every core module (core/edit/ too) imports where PySide6, pyqtgraph and torch cannot."""
    got = _import_all("dermaseg_app.core", ("PySide6", "pyqtgraph", "torch"))
    assert not got["failed"], got["failed"]
    assert not got["loaded"], got["loaded"]
    core = Path(__file__).resolve().parents[1] / "dermaseg_app" / "core"
    on_disk = {".".join(("dermaseg_app", "core", *p.relative_to(core).with_suffix("").parts)).removesuffix(".__init__")
               for p in core.rglob("*.py")}
    assert on_disk <= set(got["modules"]), sorted(on_disk - set(got["modules"]))
    assert "dermaseg_app.core.edit.ops" in got["modules"]


def test_ml_imports_without_qt():
    """Every ml module (sub-packages too) imports where PySide6 and pyqtgraph cannot."""
    got = _import_all("dermaseg_app.ml", ("PySide6", "pyqtgraph"))
    assert not got["failed"], got["failed"]
    assert not got["loaded"], got["loaded"]
    assert len(got["modules"]) > 10
