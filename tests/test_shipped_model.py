"""The bundled models (models/slsnet_isic2017.safetensors, the default, and the seed network
models/mobile_deeplab_isic2017.safetensors) draw sensible masks on the bundled samples.

The samples are CC0 images from the ISIC 2017 training set at full resolution; their ground truth
is the challenge mask. The interim CPU-trained model must reach a mean JSC above 0.7 on them
(see models/slsnet_isic2017.md for its validation scores on ISIC 2017 val).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dermaseg_app import paths

pytestmark = pytest.mark.slow

MODEL = paths.default_model_path()
SHIPPED = {  # file -> (name, architecture, largest file size)
    MODEL: ("slsnet_isic2017", "slsnet", 20_000_000),
    MODEL.parent / "mobile_deeplab_isic2017.safetensors": ("mobile_deeplab_isic2017", "mobile_deeplab", 3_000_000),
}


@pytest.fixture(scope="module", params=sorted(SHIPPED), ids=lambda p: p.stem)
def shipped(request):
    path = request.param
    if not path.exists():
        pytest.fail(f"the bundled model {path} is missing")
    from dermaseg_app.ml.predictor import Predictor

    return path, Predictor(path, device="cpu")


@pytest.fixture(scope="module")
def predictor(shipped):
    return shipped[1]


def test_model_file_describes_itself(shipped) -> None:
    path, predictor = shipped
    info = predictor.info
    name, arch, size = SHIPPED[path]
    assert info.name == name and info.arch == arch
    assert info.version and info.input_size % 8 == 0 and 0 < info.threshold < 1
    assert "isic2017" in info.trained_on
    assert info.metrics.get("jsc", 0) > 0.6  # its validation JSC on ISIC 2017 val
    assert path.with_suffix(".md").exists() and info.card_summary
    assert path.stat().st_size < size


def test_sensible_masks_on_the_bundled_samples(predictor, samples_dir: Path, sample_gt_dir: Path) -> None:
    from dermaseg_app.core.imageio import read_image, read_mask
    from dermaseg_app.core.metrics import score

    images = sorted(p for p in samples_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(images) >= 5
    jscs = []
    for image in images:
        gt = read_mask(sample_gt_dir / f"{image.stem}_segmentation.png")
        pred = predictor.predict(read_image(image))
        assert pred.mask.shape == gt.shape
        jscs.append(score(pred.mask, gt, with_hd95=False).jsc)
    mean = sum(jscs) / len(jscs)
    assert mean > 0.7, f"mean JSC {mean:.3f} on the bundled samples: {[round(j, 3) for j in jscs]}"
    assert min(jscs) > 0.3, f"a sample is badly missed: {[round(j, 3) for j in jscs]}"
