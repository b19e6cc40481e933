"""Time ``dermaseg predict`` per image, with a breakdown by stage.

    python benchmarks/bench_predict.py [--images DIR] [--model FILE] [--threads N] [--repeat R]

Stages, per image, run one after the other on the calling thread (so each is measured alone):
decode (core.imageio.read_image), preprocess (resize to the input size, scale to [0, 1]),
network (one image per run, torch.inference_mode), postprocess (probability map resized back to
the image size + threshold), contours (core.geometry.contours of the mask), encode (the mask as
a 0/255 PNG, written atomically to a temporary folder).
Then the streamed path that ``dermaseg predict`` uses (Predictor.predict_files, decoding in a
thread pool ahead of the network, masks written) is timed end to end.

Without ``--model`` (and with no bundled model) a randomly initialised SLSNet at the paper's
size (128 px input, 2.35 M parameters) is used: timings do not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermaseg_app import paths  # noqa: E402
from dermaseg_app.core.dataset import find_images  # noqa: E402
from dermaseg_app.core.geometry import contours  # noqa: E402
from dermaseg_app.core.imageio import read_image, write_mask_png  # noqa: E402
from dermaseg_app.ml.predictor import Predictor, probability_to_size  # noqa: E402
from dermaseg_app.ml.preprocessing import preprocess  # noqa: E402
from dermaseg_app.ml.registry import build_generator, default_config  # noqa: E402
from dermaseg_app.ml.weights import ModelInfo, save_model  # noqa: E402

STAGES = ("decode", "preprocess", "network", "postprocess", "contours", "encode")


def random_model(folder: Path) -> Path:
    torch.manual_seed(0)
    config = default_config("slsnet")
    info = ModelInfo(name="random-init", version="bench", arch="slsnet", config=config,
                     input_size=int(config["input_size"]), threshold=0.5)
    return save_model(folder / "random.safetensors", build_generator("slsnet", config), info)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=paths.samples_dir())
    parser.add_argument("--model", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the images (the first is a warm-up)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    images = find_images([args.images])
    if not images:
        print(f"no images found in {args.images}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model
        if model is None:
            model = paths.default_model_path() if paths.default_model_path().exists() else random_model(tmp_path)
        predictor = Predictor(model, device=args.device)
        size = predictor.input_size
        print(f"model {predictor.info.label()} ({model}), input {size}x{size}, {predictor.device_label}, "
              f"torch {torch.__version__}, {len(images)} images from {args.images}")

        times: dict[str, list[float]] = {stage: [] for stage in STAGES}
        out = tmp_path / "masks"
        out.mkdir()
        pixels = []
        for rep in range(max(1, args.repeat)):
            for path in images:
                t0 = time.perf_counter()
                rgb = read_image(path)
                t1 = time.perf_counter()
                x = preprocess(rgb, size)
                t2 = time.perf_counter()
                prob_small = predictor._probabilities(x[None])[0]
                if predictor.device.type == "cuda":
                    torch.cuda.synchronize()
                t3 = time.perf_counter()
                prob = probability_to_size(prob_small, rgb.shape[:2])
                mask = prob >= predictor.threshold
                t4 = time.perf_counter()
                contours(mask)
                t5 = time.perf_counter()
                write_mask_png(out / f"{path.stem}.png", mask)
                t6 = time.perf_counter()
                if rep == 0 and args.repeat > 1:
                    continue  # warm-up pass
                if rep == args.repeat - 1:
                    pixels.append(rgb.shape[0] * rgb.shape[1])
                for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
                    times[stage].append(dt)

        print(f"\nper image, sequential stages (images {min(pixels) / 1e6:.2f} to {max(pixels) / 1e6:.2f} MP):")
        print(f"{'stage':<12} {'mean ms':>9} {'median ms':>10} {'max ms':>9}")
        total = 0.0
        for stage in STAGES:
            values = times[stage]
            mean = statistics.fmean(values)
            total += mean
            print(f"{stage:<12} {1e3 * mean:9.1f} {1e3 * statistics.median(values):10.1f} {1e3 * max(values):9.1f}")
        print(f"{'total':<12} {1e3 * total:9.1f}")

        # the streamed path of `dermaseg predict`: decode ahead in a pool, batches through the network
        stream_out = tmp_path / "stream"
        stream_out.mkdir()
        started = time.perf_counter()
        n = 0
        for result in predictor.predict_files(images, batch_size=args.batch_size):
            if result.prediction is not None:
                write_mask_png(stream_out / f"{result.path.stem}.png", result.prediction.mask)
                n += 1
        elapsed = time.perf_counter() - started
        print(f"\nstreamed (predict_files, batch {args.batch_size}, masks written): "
              f"{n} images in {elapsed:.2f} s = {1e3 * elapsed / max(1, n):.1f} ms per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
