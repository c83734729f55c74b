"""Training-step throughput and peak memory on CPU (or CUDA with bf16 autocast).

    .venv/bin/python -m bench.bench_train --sizes s,b --batch 4 --steps 3

For each size, with and without activation checkpointing, a separate process runs the real training step
(SMPL-X targets on the device, forward, losses, backward, Adam step) on batches of the synthetic HumanData set and
reports images/s (median step time after one warm-up step) and the process's peak resident memory; on CUDA it
uses bf16 autocast and reports the peak CUDA memory. The data-loading share of a real run is printed by the
trainer's log ("data N %").
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(size: str, ckpt: bool, batch: int, steps: int, data_root: str, bm_dir: str, device: str) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from common.config import load_config
    from data.datasets import collate, load_split
    from main.steps import build_training_model, smplerx_step

    torch.set_num_threads(2)
    cfg = load_config("smpler_x_synthetic", [f"model.encoder_size={size}", "model.regressor_channels=512",
                                             "model.box_net_channels=256", f"model.activation_checkpointing={ckpt}",
                                             f"paths.data_root={data_root}", f"paths.body_model_dir={bm_dir}"])
    dev = torch.device(device)
    model, body_models = build_training_model(cfg, dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    step = smplerx_step(cfg, body_models)
    loader = DataLoader(load_split(cfg, "Synthetic", "train", train=True), batch_size=batch, shuffle=False,
                        collate_fn=collate, drop_last=True)
    batches = [b for _, b in zip(range(steps + 1), loader)]
    times = []
    for b in batches:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = sum(step(model, b, dev).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    med = statistics.median(times[1:])
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"size": size, "checkpointing": ckpt, "batch": batch, "step_s": med, "images_per_s": batch / med,
            "peak_mb": peak, "device": device}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="s,b")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(**json.loads(a.worker))))
        return 0
    from common.body_model import write_synthetic_body_models
    from data.synthetic_humandata import prepare_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        bm, data = Path(tmp) / "bm", Path(tmp) / "data"
        write_synthetic_body_models(bm, smpl=False)
        prepare_synthetic_dataset(data, bm, n_train=a.batch * (a.steps + 1), n_test=1)
        print(f"# {a.device}, batch {a.batch}, median of {a.steps} steps after 1 warm-up, one process per row")
        print(f"{'size':>4} {'ckpt':>5} {'step [s]':>9} {'img/s':>7} {'peak MB':>8}")
        for size in a.sizes.split(","):
            for ckpt in (False, True):
                job = {"size": size, "ckpt": ckpt, "batch": a.batch, "steps": a.steps, "data_root": str(data),
                       "bm_dir": str(bm), "device": a.device}
                out = subprocess.run([sys.executable, "-m", "bench.bench_train", "--worker", json.dumps(job)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{size:>4} {str(ckpt):>5} {r['step_s']:9.2f} {r['images_per_s']:7.2f} {r['peak_mb']:8.0f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
