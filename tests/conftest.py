import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The predictor's backend (ml.backends) defaults to the fastest runtime installed, which exports
# every model to ONNX first; tests run torch unless they ask for a backend (test_backends.py).
os.environ.setdefault("DERMASEG_BACKEND", "torch")
# The compiled attention kernel is a build product, not user data: every test (and every child
# process a test starts) shares the machine's build instead of compiling it again (~1 minute)
# in each test's private cache folder.
os.environ.setdefault("DERMASEG_KERNEL_CACHE", str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dermaseg" / "kernels"))

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples" / "images"
SAMPLE_GT = ROOT / "resources" / "samples" / "ISIC-2017_Training_Part1_GroundTruth"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_gt_dir() -> Path:
    return SAMPLE_GT


@pytest.fixture
def sample_folder(tmp_path):
    """``sample_folder(stems)``: an ISIC-layout copy of those bundled samples (``tmp/data/images``
    beside ``tmp/data/ISIC-2017_Training_Part1_GroundTruth``); returns the images folder."""
    import shutil

    def make(stems) -> Path:
        images = tmp_path / "data" / "images"
        gt = tmp_path / "data" / SAMPLE_GT.name
        images.mkdir(parents=True)
        gt.mkdir()
        for stem in stems:
            shutil.copy(SAMPLES / f"{stem}.jpg", images)
            shutil.copy(SAMPLE_GT / f"{stem}_segmentation.png", gt)
        return images

    return make


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path, monkeypatch):
    """Keep every test away from the real user's settings and prediction cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core CI machine more threads are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """An SLSNet with random weights at a 32 px input (fast), saved with the weights API."""
    import torch

    from dermaseg_app.ml.registry import build_generator
    from dermaseg_app.ml.weights import ModelInfo, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    net = build_generator("slsnet", {"input_size": 32})
    save_model(path, net, ModelInfo(name="random-test", version="0.0.1", arch="slsnet",
                                    config={"input_size": 32}, input_size=32, threshold=0.45))
    return path
