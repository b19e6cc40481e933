"""The project's own wiring: paths, the command's dispatch, and the bundled samples."""

import subprocess
import sys

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


def test_core_imports_no_qt_and_no_torch():
    code = (
        "import sys, importlib, pkgutil, dermaseg_app.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('dermaseg_app.core.' + m.name)\n"
        "bad = [m for m in ('PySide6', 'pyqtgraph', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ml_imports_no_qt():
    code = (
        "import sys, importlib, pkgutil, dermaseg_app.ml as m\n"
        "for mod in pkgutil.iter_modules(m.__path__): importlib.import_module('dermaseg_app.ml.' + mod.name)\n"
        "bad = [n for n in ('PySide6', 'pyqtgraph') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
