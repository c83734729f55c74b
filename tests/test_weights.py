"""Weights by name through the ecosystem's caches (common/engine/weights.py), all offline: the Hugging Face hub cache
and torchvision's cache are pre-populated in the exact on-disk layout those libraries use; no test touches the
network (downloads are switched off, and would fail the test)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common import paths
from common.errors import CheckpointError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(hf_home: Path, repo: str, filename: str, data: bytes) -> Path:
    """Put ``data`` into a Hugging Face cache as ``hf_hub_download`` leaves it: blobs/<sha256>, snapshots/<commit>/
    <filename> -> a relative symlink to the blob, refs/main = <commit>. Returns the snapshot path."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snap = folder / "snapshots" / COMMIT / filename
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    return snap


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TORCH_HOME", "SMPLERX_"))}
    env.update({"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"),
                "SMPLERX_PRETRAINED_DIR": str(tmp_path / "pretrained_models"), **extra})
    (tmp_path / "pretrained_models").mkdir(exist_ok=True)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_released_name_from_the_hub_cache_through_inference(tmp_path, tiny_checkpoint, body_model_dir):
    """`--ckpt smpler_x_s32` finds the file in the Hugging Face cache (mirror repository) and runs inference."""
    import cv2

    snap = hub_cache(tmp_path / "hf", "camenduru/SMPLer-X", "smpler_x_s32.pth.tar", tiny_checkpoint.read_bytes())
    env = _env(tmp_path)
    out = _run(["-m", "common.engine.weights", "smpler_x_s32"], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"smpler_x_s32: {snap}"
    img = tmp_path / "p.png"
    cv2.imwrite(str(img), np.full((120, 90, 3), 100, np.uint8))
    out = _run(["-m", "main.inference", "--ckpt", "smpler_x_s32", "--input", str(img), "--output",
                str(tmp_path / "out"), "--body-model-dir", str(body_model_dir)], env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "smplx" / "p_0.npz").is_file()


def test_pretrained_models_first_then_authors_repository(tmp_path, monkeypatch):
    from common.engine import weights

    hub_cache(tmp_path / "hf", "camenduru/SMPLer-X", "smpler_x_h32.pth.tar", b"mirror")
    authors = hub_cache(tmp_path / "hf", "caizhongang/SMPLer-X", "smpler_x_h32.pth.tar", b"authors")
    env = _env(tmp_path)
    out = _run(["-m", "common.engine.weights", "smpler_x_h32"], env)
    assert out.returncode == 0 and out.stdout.strip() == f"smpler_x_h32: {authors}", out.stderr
    local = tmp_path / "pretrained_models" / "smpler_x_h32.pth.tar"
    local.write_bytes(b"local")
    out = _run(["-m", "common.engine.weights", "smpler_x_h32"], env)
    assert out.stdout.strip() == f"smpler_x_h32: {local}"
    # anything that is not a name is a path, returned as it is
    monkeypatch.setattr(weights.paths, "PRETRAINED_DIR", tmp_path / "pretrained_models")
    assert weights.resolve_checkpoint("runs/x/smpler_x_h32.pth.tar") == Path("runs/x/smpler_x_h32.pth.tar")
    assert weights.resolve_checkpoint("smpler_x_h32.pth.tar") == local
    assert weights.checkpoint_name("smpler_x_b32") == "smpler_x_b32" and weights.checkpoint_name("foo") is None


def test_offline_and_absent_is_one_line_with_the_fix(tmp_path, body_model_dir):
    env = _env(tmp_path)
    out = _run(["-m", "main.inference", "--ckpt", "smpler_x_l32", "--input", str(tmp_path), "--output",
                str(tmp_path / "o"), "--body-model-dir", str(body_model_dir)], env)
    assert out.returncode == 2
    # the image error comes first (inputs are checked before the model): use a real image
    import cv2

    img = tmp_path / "p.png"
    cv2.imwrite(str(img), np.full((60, 40, 3), 100, np.uint8))
    out = _run(["-m", "main.inference", "--ckpt", "smpler_x_l32", "--input", str(img), "--output",
                str(tmp_path / "o"), "--body-model-dir", str(body_model_dir)], env)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), out.stderr
    line = err[0]
    assert "smpler_x_l32.pth.tar" in line and str(tmp_path / "pretrained_models") in line
    assert "hf download caizhongang/SMPLer-X smpler_x_l32.pth.tar" in line and "HF_HUB_OFFLINE" in line


def test_detector_weights_from_torchvision_cache_layout(tmp_path):
    """TORCH_HOME/hub/checkpoints/<the weights enum's file name> is found offline; absent, one line with the URL."""
    import torchvision.models.detection as tvd

    env = _env(tmp_path)
    out = _run(["-m", "common.engine.weights", "fasterrcnn_mobilenet_v3_large_320_fpn"], env)
    assert out.returncode == 2 and "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth" in out.stderr
    assert "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth" in out.stderr
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    cache.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(tvd.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
               .state_dict(), cache)
    out = _run(["-m", "common.engine.weights", "fasterrcnn_mobilenet_v3_large_320_fpn"], env)
    assert out.returncode == 0 and out.stdout.strip().endswith(str(cache)), out.stderr
    code = ("from common.engine.detector import TorchvisionDetector; import numpy as np; "
            "d = TorchvisionDetector(arch='fasterrcnn_mobilenet_v3_large_320_fpn'); print(d.weights_path); "
            "b, s = d(np.zeros((240, 320, 3), np.uint8)); print(b.shape[1])")
    out = _run(["-c", code], env)
    assert out.returncode == 0 and out.stdout.split() == [str(cache), "4"], out.stderr


def test_crafted_detector_weights_are_not_unpickled(tmp_path, monkeypatch):
    from common.engine import weights
    from common.engine.detector import TorchvisionDetector

    class Payload:
        def __reduce__(self):
            return (os.mknod, (str(tmp_path / "ran"),))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(weights.paths, "PRETRAINED_DIR", tmp_path / "pm")
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    cache.parent.mkdir(parents=True)
    torch.save({"x": Payload()}, cache)
    with pytest.raises(CheckpointError, match="cannot load"):
        TorchvisionDetector(arch="fasterrcnn_mobilenet_v3_large_320_fpn")
    assert not (tmp_path / "ran").exists()


def test_released_checkpoint_is_memory_mapped(tmp_path, tiny_checkpoint):
    """A released file also holds the optimiser state (H32: 7.94 GB in all); loading maps the file and reads only
    the network's tensors: the resident memory grows by far less than the file's size."""
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["optimizer"] = {"state": {i: {"exp_avg": torch.randn(25_000_000)} for i in range(4)}, "param_groups": []}
    big = tmp_path / "smpler_x_s32.pth.tar"
    torch.save(ck, big)
    size_mb = big.stat().st_size / 2**20
    assert size_mb > 350
    code = (  # what load_model does with the file (the body model aside); the file's contents stay referenced
        "import sys\n"
        "from common.engine.checkpoint import load_network_weights, network_state, read_checkpoint\n"
        "from common.config import load_config\n"
        "from common.nets import SMPLerX\n"
        "def rss():\n"
        "    return int([ln for ln in open('/proc/self/status') if ln.startswith('VmRSS')][0].split()[1]) / 1024\n"
        "model = SMPLerX(load_config('smpler_x_tiny').model)\n"
        "before = rss()\n"
        "ck = read_checkpoint(sys.argv[1])\n"
        "load_network_weights(model, network_state(ck))\n"
        "print(rss() - before)  # MB\n")
    out = _run(["-c", code, str(big)], _env(tmp_path))
    assert out.returncode == 0, out.stderr
    grown = float(out.stdout.split()[-1])
    assert grown < 0.3 * size_mb, (grown, size_mb)
