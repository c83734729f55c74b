"""Forward-pass timing of SMPLer-X on CPU (or GPU), per size and batch, full test-mode forward incl. SMPL-X layer.

    .venv/bin/python -m bench.bench_forward --sizes s,b,l,h --batches 1,8 --threads 2 --runs 5

For each size and batch it times, interleaved in the same process so machine noise hits both alike:

* ``ours``: the model as shipped;
* ``reference-ops``: the same weights run with the original's operations where ours differ (explicit
  ``softmax(q k^T) v`` attention instead of ``scaled_dot_product_attention``; ``F.linear`` (MKL) instead of
  oneDNN with pre-packed weights and fused GELU; NCHW transposed convolutions in the box net instead of
  channels-last), i.e. what the original network computes, on the same torch build.

and reports medians after one warm-up run, the speed-up ``reference-ops / ours``, and the largest output
difference between the two (they must agree within the golden tolerances). Weights are random (the deterministic
generator is seeded); the body model is the synthetic one unless ``--body-model-dir`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common.config import Config
from common.nets import SMPLerX, fast_cpu
from common.nets.heads import BoxNet
from common.nets.vit import Attention


def reference_attention(self: Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q * (c // self.num_heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


def reference_boxnet(self: BoxNet, feat, body_hm):
    from common.utils.geometry import sample_joint_features, soft_argmax_2d

    d, h, w = self.hm_shape
    x = torch.cat((feat, body_hm.reshape(body_hm.shape[0], -1, h, w)), 1)
    for layer in self.deconv:  # NCHW weights and activations, as the original
        if isinstance(layer, torch.nn.ConvTranspose2d):
            x = F.conv_transpose2d(x.contiguous(), layer.weight.contiguous(), None, 2, 1)
        else:
            x = layer(x.contiguous())
    x = x.contiguous()
    centers = soft_argmax_2d(F.conv2d(x, self.bbox_center[0].weight.contiguous(), self.bbox_center[0].bias))
    sampled = sample_joint_features(x, centers.detach())
    centers = centers / 8
    return (centers[:, 0], self.lhand_size(sampled[:, 0]), centers[:, 1], self.rhand_size(sampled[:, 1]),
            centers[:, 2], self.face_size(sampled[:, 2]))


@contextlib.contextmanager
def reference_ops():
    saved = Attention.forward, BoxNet.forward, fast_cpu.is_enabled()
    Attention.forward, BoxNet.forward = reference_attention, reference_boxnet
    fast_cpu.set_enabled(False)
    try:
        yield
    finally:
        Attention.forward, BoxNet.forward = saved[:2]
        fast_cpu.set_enabled(saved[2])


def random_model(size: str, body_model_dir: Path, device: torch.device) -> SMPLerX:
    """Seeded random weights (training init plus noise, so every head depends on the input)."""
    from common.body_model import SMPLXLayer

    torch.manual_seed(0)
    cfg = Config()
    cfg.model.encoder_size = size
    model = SMPLerX(cfg.model)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for lin in (model.body_regressor.root_pose_out[0], model.body_regressor.body_pose_out[0],
                    model.hand_regressor.hand_pose_out[0], model.face_regressor.jaw_pose_out[0]):
            lin.bias.add_(torch.tensor([1.0, 0, 0, 1, 0, 0]).repeat(lin.bias.numel() // 6))
    model.attach_body_model(SMPLXLayer(body_model_dir))
    return model.eval().to(device)


def time_once(model, x, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.no_grad():
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="s,h")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--body-model-dir", default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tmp = None
    bm_dir = Path(args.body_model_dir) if args.body_model_dir else None
    if bm_dir is None:
        from common.body_model import write_synthetic_body_models

        tmp = tempfile.TemporaryDirectory()
        bm_dir = Path(tmp.name)
        write_synthetic_body_models(bm_dir, smpl=False)
    rows = []
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}, "
          f"device {device}, median of {args.runs} runs after 1 warm-up")
    print(f"{'size':>4} {'batch':>5} {'ours [s]':>9} {'ref-ops [s]':>11} {'speed-up':>8} {'max |diff| poses':>16}")
    for size in args.sizes.split(","):
        model = random_model(size, bm_dir, device)
        for batch in (int(b) for b in args.batches.split(",")):
            torch.manual_seed(0)
            x = torch.rand(batch, 3, 512, 384, device=device)
            with torch.no_grad():
                ours = model(x).to_dict()
                with reference_ops():
                    ref = model(x).to_dict()
            diff = max((ours[k] - ref[k]).abs().max().item() for k in ours if "pose" in k)
            t_ours, t_ref = [], []
            for _ in range(args.runs):  # interleaved
                t_ours.append(time_once(model, x, device))
                with reference_ops():
                    t_ref.append(time_once(model, x, device))
            mo, mr = statistics.median(t_ours), statistics.median(t_ref)
            rows.append({"size": size, "batch": batch, "ours_s": mo, "reference_ops_s": mr, "speedup": mr / mo,
                         "max_pose_diff": diff, "ours_runs": t_ours, "reference_runs": t_ref})
            print(f"{size:>4} {batch:>5} {mo:9.3f} {mr:11.3f} {mr / mo:8.2f} {diff:16.2e}", flush=True)
        del model
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
