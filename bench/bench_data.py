"""Data-loading throughput of the training pipeline: samples/s of one worker process on 1920x1080 JPEGs.

    .venv/bin/python -m bench.bench_data [--n 32] [--runs 3]

Generates a synthetic HumanData set with 1920x1080 JPEG images (rendered stand-in bodies), then times
``SampleDataset.__getitem__`` (uint8 image decode + augmentation + crop + all worker-side targets) in this single
process,
which is what one data-loader worker does. Reports the median samples/s over runs and the time split between
decoding (``cv2.imread``), the crop (``warpAffine`` + colour) and the rest (targets), measured by timing those
calls inside the pipeline. The body-model targets are computed batched on the training device, not here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32, help="images in the generated set")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # a data-loader worker: one thread
    from common.body_model import write_synthetic_body_models
    from common.config import load_config
    from data import sample as sample_mod
    from data.datasets import SampleDataset
    from data.humandata import load_humandata
    from data.synthetic_humandata import write_synthetic_humandata

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_body_models(tmp / "bm", smpl=False)
        npz = write_synthetic_humandata(tmp / "data", tmp / "bm", n=args.n, img_size=(1080, 1920))
        records = load_humandata(npz, name="Synthetic", img_dir=tmp / "data")
        ds = SampleDataset(records, True, load_config("smpler_x_tiny").model, seed=0)
        timers = {"decode": 0.0, "crop": 0.0}

        def timed(name, fn):
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    timers[name] += time.perf_counter() - t
            return wrapper

        sample_mod.load_image_uint8 = timed("decode", sample_mod.load_image_uint8)
        sample_mod.augment_fast = timed("crop", sample_mod.augment_fast)
        rates, shares = [], []
        for run in range(args.runs + 1):
            timers.update(decode=0.0, crop=0.0)
            ds.set_epoch(run)
            t = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            wall = time.perf_counter() - t
            if run:  # the first pass warms the file cache
                rates.append(len(ds) / wall)
                shares.append((timers["decode"] / wall, timers["crop"] / wall))
        d, c = np.median(np.array(shares), 0)
        print(f"samples/s per worker (1920x1080 JPEG, median of {args.runs}): {statistics.median(rates):.1f}")
        rest = 100 * (1 - d - c)
        print(f"time share: decode {100 * d:.0f} %, crop {100 * c:.0f} %, targets and the rest {rest:.0f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
