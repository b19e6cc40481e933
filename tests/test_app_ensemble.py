"""Two models together (issue 18): the ensemble's maths, its rule, and `dermaseg evaluate
--ensemble-with` (no Qt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dermaseg_app.app.ensemble import (
    EnsembleHeader,
    EnsemblePredictor,
    EnsembleVerdict,
    ensemble_threshold,
    mean_probability,
    measure_on_caches,
    verdict,
)

STEMS = ("ISIC_0000169", "ISIC_0000299")


def save_mobile_deeplab(path: Path, size: int, seed: int, threshold: float, name: str) -> Path:
    """An untrained reduced Mobile DeepLab (the cheapest seed network) at ``size`` px."""
    import torch

    from dermaseg_app.ml.registry import build_generator, default_config
    from dermaseg_app.ml.weights import ModelInfo, save_model

    torch.manual_seed(seed)
    config = dict(default_config("mobile_deeplab"), input_size=size)
    info = ModelInfo(name=name, version="0.0.1", arch="mobile_deeplab", config=config, input_size=size,
                     threshold=threshold)
    return save_model(path, build_generator("mobile_deeplab", config), info)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    return (save_mobile_deeplab(folder / "a.safetensors", 32, 0, 0.4, "md-a"),
            save_mobile_deeplab(folder / "b.safetensors", 48, 1, 0.6, "md-b"))


def test_mean_probability_and_threshold() -> None:
    a = np.array([[0.0, 1.0], [0.2, 0.8]], np.float32)
    b = np.array([[1.0, 1.0], [0.6, 0.0]], np.float32)
    assert np.allclose(mean_probability(a, b), [[0.5, 1.0], [0.4, 0.4]])
    u8 = (a * 255).astype(np.uint8)  # 8-bit maps (the cache's) are scaled first
    assert np.allclose(mean_probability(u8, b), (u8 / 255 + b) / 2, atol=1e-6)
    assert ensemble_threshold(0.4, 0.6) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_probability(a, np.zeros((3, 2), np.float32))


def test_ensemble_prediction_is_the_mean_of_the_two_maps(two_models, one_torch_thread) -> None:
    from dermaseg_app.ml.predictor import Predictor

    pa, pb = (Predictor(p, "cpu", backend="torch") for p in two_models)
    assert pa.input_size != pb.input_size  # different input sizes combine at the image's size
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ens = EnsemblePredictor(pa, pb)
    got = ens.predict(rgb)
    want = (pa.predict(rgb).prob + pb.predict(rgb).prob) / 2
    assert got.prob.shape == (37, 53)
    assert np.allclose(got.prob, want, atol=1e-6)
    assert got.threshold == pytest.approx(0.5) == ens.threshold
    assert np.array_equal(got.mask, got.prob >= 0.5)
    assert ens.info.label() == "Ensemble (md-a 0.0.1 + md-b 0.0.1)"


def test_the_ensemble_header_keys_the_cache_on_both_models(two_models) -> None:
    from dermaseg_app.ml.header import read_model_header

    ha, hb = (read_model_header(p) for p in two_models)
    header = EnsembleHeader(ha, hb)
    assert header.threshold == pytest.approx(0.5)
    assert header.label == "Ensemble (md-a 0.0.1 + md-b 0.0.1)"
    key = header.cache_key()
    assert key != ha.cache_key() and key != hb.cache_key()
    assert ha.cache_key().fingerprint in key.fingerprint and hb.cache_key().fingerprint in key.fingerprint


def test_the_rule_offers_the_ensemble_only_when_it_beats_both() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:, :2] = True
    # A finds the left column pair's top half and a false positive; B the bottom half: each half
    # right; the mean of their maps is 0.5 on the lesion and 0.25 off it: the ensemble is exact
    a = np.zeros((4, 4), np.float32)
    b = np.zeros((4, 4), np.float32)
    a[:2, :2] = 1.0
    b[2:, :2] = 1.0
    result = verdict([(a, b, gt)], 0.5, 0.5)
    assert (result.jsc_a, result.jsc_b, result.jsc_ensemble) == (0.5, 0.5, 1.0) and result.better
    # A is already perfect: the ensemble cannot be higher, it is not offered
    perfect = gt.astype(np.float32)
    worse = verdict([(perfect, b, gt)], 0.5, 0.5)
    assert worse.jsc_a == 1.0 and not worse.better
    # a tie is not higher
    assert not EnsembleVerdict(3, 0.7, 0.6, 0.7).better
    assert not EnsembleVerdict(0, 0.0, 0.0, 0.0).better  # nothing measured: not offered
    assert "not offered" in worse.describe("A", "B")


def test_measure_on_caches_uses_only_images_with_both_maps(tmp_path) -> None:
    from dermaseg_app.core.dataset import Case
    from dermaseg_app.core.imageio import write_mask_png
    from dermaseg_app.core.prediction_cache import ModelKey, PredictionCache

    gt = np.zeros((6, 6), bool)
    gt[:3] = True
    cases = []
    for i in range(3):
        image = tmp_path / f"img{i}.png"
        image.write_bytes(bytes([i]))  # the caches key on the file; it is not read
        mask = tmp_path / f"img{i}_mask.png"
        write_mask_png(mask, gt)
        cases.append(Case(image=image, ground_truth=mask, stem=image.stem))
    cases.append(Case(image=tmp_path / "nogt.png", ground_truth=None, stem="nogt"))
    ca = PredictionCache(ModelKey("a", "1"), root=tmp_path / "cache")
    cb = PredictionCache(ModelKey("b", "1"), root=tmp_path / "cache")
    top, bottom = np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8)
    top[:3] = 255
    bottom[3:] = 255
    for c in cases[:2]:
        ca.store(c.image, top)
        cb.store(c.image, bottom)
    ca.store(cases[2].image, top)  # B has no map of it yet: left out
    result = measure_on_caches(None, cases, ca, cb, 0.5, 0.5)
    assert result.n == 2 and result.jsc_a == 1.0 and result.jsc_b == 0.0
    assert result.jsc_ensemble == 0.5 and not result.better  # 0.5 >= 0.5 everywhere: the whole image


def test_evaluate_ensemble_with_prints_the_three_scores(two_models, tmp_path, samples_dir, sample_gt_dir,
                                                        capsys, one_torch_thread) -> None:
    from dermaseg_app import cli

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in STEMS:
        shutil.copyfile(samples_dir / f"{stem}.jpg", root / "images" / f"{stem}.jpg")
        shutil.copyfile(sample_gt_dir / f"{stem}_segmentation.png", root / "masks" / f"{stem}.png")
    report = tmp_path / "r.json"
    code = cli.main(["evaluate", str(root / "images"), "--model", str(two_models[0]), "--ensemble-with",
                     str(two_models[1]), "--device", "cpu", "--json", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    assert "threshold 0.5" in out and "mean JSC on 2 image(s)" in out
    data = json.loads(report.read_text())
    assert data["images"] == 2 and len(data["per_image"]) == 2
    m = data["mean"]
    assert data["ensemble_better"] == (m["jsc_ensemble"] > max(m["jsc_a"], m["jsc_b"]))
    assert m["jsc_a"] == pytest.approx(np.mean([r["jsc_a"] for r in data["per_image"]]))
