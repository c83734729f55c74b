"""Forward-pass timing of SMPLer-X on the CPU per size, batch and precision, full test-mode forward incl. SMPL-X.

    .venv/bin/python -m bench.bench_forward --sizes s,h --batches 1,8 --threads 2 --runs 5 [--isa]

For each size and batch it times, interleaved in the same process (run k of every mode, then run k + 1, ...) so
machine noise hits all of them alike:

* ``fp32``: the model as shipped (the default; within float32 rounding of the original network);
* ``ref-ops``: the same weights with the original's operations where ours differ (explicit ``softmax(q k^T) v``
  attention, ``F.linear`` through MKL instead of oneDNN with pre-packed weights and fused GELU, NCHW transposed
  convolutions with separate BatchNorm / ReLU), on the same torch build: what the original network computes;
* ``bf16`` and ``int8``: ``--precision bf16`` / ``int8`` (:mod:`common.nets.precision`).

It reports medians after one warm-up run, each mode's speed-up over ``fp32`` and its deviation from ``fp32``:
poses (the angle of the rotation between the two, rad, mean and max over every joint), vertices (mm, mean distance
in the camera frame: mostly the depth of the translation, tens of metres in the network's virtual camera), hand /
face boxes (px of the 512x384 crop, max). Weights are the reference-style random ones (seeded; training init plus
noise, so every head depends on the input); the body model is the synthetic one unless ``--body-model-dir`` is
given. ``--isa`` runs one bf16 and one int8 forward with ``ONEDNN_VERBOSE=1`` in a subprocess and lists which oneDNN
implementations (ISA paths) the products and convolutions ran on, so that a slow fallback is seen, not guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from common.config import Config
from common.nets import SMPLerX, fast_cpu
from common.nets.heads import BoxNet
from common.nets.precision import set_precision
from common.nets.vit import Attention

MODES = ("fp32", "ref-ops", "bf16", "int8")


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


@contextlib.contextmanager
def mode(model: SMPLerX, name: str):
    """Run ``model`` in one of :data:`MODES`."""
    if name == "ref-ops":
        with reference_ops():
            yield
        return
    set_precision(model, name)
    try:
        yield
    finally:
        set_precision(model, "fp32")


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


def rotation_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, J) angle (rad) of the rotation between axis-angle poses ``a`` and ``b`` (B, 3J): a distance between
    rotations (the axis-angle components themselves jump by ~2 pi where a rotation nears 180 degrees)."""
    from common.utils.geometry import axis_angle_to_rotmat

    ra, rb = (axis_angle_to_rotmat(x.reshape(-1, 3).double()) for x in (a, b))
    cos = ((ra.transpose(1, 2) @ rb).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    return torch.arccos(cos.clamp(-1.0, 1.0)).reshape(a.shape[0], -1)


def deviation(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far ``out`` is from ``ref`` (test-mode output dicts): poses as rotation angles (rad, every joint),
    vertices mm (camera frame), boxes px."""
    pose = torch.cat([rotation_angles(out[k], ref[k]) for k in ref if k.endswith("_pose")], 1)
    verts = (out["smplx_mesh_cam"] - ref["smplx_mesh_cam"]).norm(dim=-1)
    boxes = torch.cat([(out[k] - ref[k]).abs().flatten(1) for k in ("lhand_bbox", "rhand_bbox", "face_bbox")], 1)
    return {"pose_mean": pose.mean().item(), "pose_max": pose.max().item(), "vert_mean_mm": 1000 * verts.mean().item(),
            "box_max_px": boxes.max().item()}


def isa_report(size: str, body_model_dir: Path) -> str:
    """Which oneDNN implementations a bf16 and an int8 forward use (ONEDNN_VERBOSE=1 in a subprocess)."""
    code = ("import torch, sys; from pathlib import Path; from bench.bench_forward import random_model;"
            "from common.nets.precision import set_precision; torch.set_num_threads(2);"
            f"m = random_model({size!r}, Path({str(body_model_dir)!r}), torch.device('cpu'));"
            "x = torch.rand(1, 3, 512, 384)\n"
            "for p in ('bf16', 'int8'):\n"
            "    set_precision(m, p); print('#PRECISION', p, flush=True)\n"
            "    with torch.no_grad(): m(x)\n")
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    lines, current, counts = [], "?", {}
    for line in out.splitlines():
        if line.startswith("#PRECISION"):
            current = line.split()[1]
        elif line.startswith("onednn_verbose") and ",exec," in line:
            f = line.split(",")
            # onednn_verbose,[timestamp,]primitive,exec,cpu,<kind>,<implementation>,...
            i = f.index("exec")
            kind, impl = f[i + 2], f[i + 3]
            dt = re.search(r"src:(bf16|f32|u8|s8)", line)
            counts.setdefault(current, Counter())[(kind, impl, dt.group(1) if dt else "?")] += 1
        elif line.startswith("onednn_verbose") and "info,cpu,isa" in line and not lines:
            lines.append("  " + line.split("info,cpu,isa:")[-1].strip() if "isa:" in line else line)
    for prec, c in counts.items():
        lines.append(f"  {prec}: " + "; ".join(f"{k} {impl} ({dt}) x{n}" for (k, impl, dt), n in sorted(c.items())))
    return "\n".join(lines) or "  (no oneDNN verbose output: this torch build may not route through oneDNN)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="s,h")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--body-model-dir", default=None)
    p.add_argument("--isa", action="store_true", help="report oneDNN's implementation per primitive (bf16, int8)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = [m for m in args.modes.split(",") if m]
    tmp = None
    bm_dir = Path(args.body_model_dir) if args.body_model_dir else None
    if bm_dir is None:
        from common.body_model import write_synthetic_body_models

        tmp = tempfile.TemporaryDirectory()
        bm_dir = Path(tmp.name)
        write_synthetic_body_models(bm_dir, smpl=False)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.backends.cpu.get_cpu_capability()}, threads {args.threads}, device {device}, median of "
          f"{args.runs} runs after 1 warm-up, modes interleaved")
    if args.isa:
        print("# oneDNN implementations (ONEDNN_VERBOSE), size s, batch 1:\n" + isa_report("s", bm_dir), flush=True)
    rows = []
    print("| size | batch | mode | time [s] | speed-up vs fp32 | pose dev mean / max [rad] | vertex dev mean [mm] | "
          "box dev max [px] |\n|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        model = random_model(size, bm_dir, device)
        for batch in (int(b) for b in args.batches.split(",")):
            torch.manual_seed(0)
            x = torch.rand(batch, 3, 512, 384, device=device)
            outs = {}
            with torch.no_grad():
                for m in modes:
                    with mode(model, m):
                        outs[m] = model(x).to_dict()  # also the warm-up
            times: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.runs):
                for m in modes:
                    with mode(model, m):
                        times[m].append(time_once(model, x, device))
            ref = outs.get("fp32")
            base = statistics.median(times["fp32"]) if "fp32" in times else None
            for m in modes:
                med = statistics.median(times[m])
                dev = deviation(outs[m], ref) if ref is not None else {}
                rows.append({"size": size, "batch": batch, "mode": m, "time_s": med, "runs": times[m],
                             "speedup": base / med if base else None, **dev})
                speed = f"{base / med:.2f}" if base else "-"
                devs = (f"{dev['pose_mean']:.1e} / {dev['pose_max']:.1e} | {dev['vert_mean_mm']:.2f} | "
                        f"{dev['box_max_px']:.3f}") if dev else "- | - | -"
                print(f"| {size.upper()} | {batch} | {m} | {med:.3f} | {speed} | {devs} |", flush=True)
        del model
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
