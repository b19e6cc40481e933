import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples" / "images"
SAMPLE_GT = ROOT / "resources" / "samples" / "ISIC-2017_Training_Part1_GroundTruth"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_gt_dir() -> Path:
    return SAMPLE_GT
