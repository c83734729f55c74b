"""--precision bf16 / int8 (common/nets/precision.py, common/nets/fast_cpu.py): the lower precisions really run,
stay within the documented deviations from fp32 (docs/benchmarks.md), switch back to exact fp32, and fail clearly
where they cannot run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.bench_forward import deviation, random_model, rotation_angles
from common.errors import InputError
from common.nets import fast_cpu
from common.nets.precision import set_precision

# Documented bounds (docs/benchmarks.md, "Network forward and precision"): the mean rotation angle between each
# joint's pose and fp32's on reference-style random weights (rad; measured bf16 0.002-0.008, int8 0.008-0.017 over
# S-H), and the hand / face boxes (px of the 512x384 crop).
POSE_MEAN_BOUND = {"bf16": 0.01, "int8": 0.02}
BOX_MAX_BOUND_PX = 2.0

pytestmark = pytest.mark.skipif(not fast_cpu.is_enabled(), reason="oneDNN is not available in this torch build")


@pytest.fixture(scope="module")
def model_s(body_model_dir):
    return random_model("s", body_model_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    return torch.rand(2, 3, 512, 384)


@pytest.fixture(scope="module")
def outputs(model_s, images):
    out = {}
    with torch.no_grad():
        for p in ("fp32", "bf16", "int8", "fp32"):
            set_precision(model_s, p)
            out.setdefault(p, []).append(model_s(images).to_dict())
    return out


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precision_runs_and_stays_within_the_bounds(outputs, precision):
    dev = deviation(outputs[precision][0], outputs["fp32"][0])
    assert dev["pose_mean"] > 1e-6, "no deviation at all: the low-precision path did not run"
    assert dev["pose_mean"] < POSE_MEAN_BOUND[precision], dev
    assert dev["box_max_px"] < BOX_MAX_BOUND_PX, dev
    assert all(torch.isfinite(v).all() for v in outputs[precision][0].values())


def test_switching_back_gives_exact_fp32(outputs):
    first, again = outputs["fp32"]
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_int8_modules_and_kept_bf16_layers(model_s):
    set_precision(model_s, "int8")
    try:
        blocks = model_s.encoder.blocks
        assert blocks[0].attn.qkv.compute == "int8" and blocks[0].mlp.fc1.compute == "int8"
        assert blocks[0].attn.proj.compute == "bf16" and blocks[0].mlp.fc2.compute == "bf16"
        assert model_s.box_net.deconv.compute == "bf16"
        assert all(p.dtype == torch.float32 for p in model_s.parameters())  # master weights untouched
    finally:
        set_precision(model_s, "fp32")
    assert blocks[0].attn.qkv.compute == "fp32" and model_s.box_net.deconv.compute == "fp32"


def test_packed_copies_follow_weight_changes(model_s, images):
    """A weight changed after the bf16 / int8 copies were made (fine-tuning, load_state_dict) is seen."""
    lin = model_s.encoder.blocks[0].mlp.fc1
    x = torch.randn(5, lin.in_features)
    with torch.no_grad():
        for p in ("bf16", "int8"):
            lin.compute = p
            before = lin(x)
            lin.weight.mul_(2.0)
            after = lin(x)
            lin.weight.div_(2.0)
            assert not torch.allclose(before, after), p
            np.testing.assert_allclose(lin(x), before, rtol=0, atol=1e-6)
    lin.compute = "fp32"


def test_bad_requests_are_clear(model_s, monkeypatch):
    with pytest.raises(InputError, match="choose one of"):
        set_precision(model_s, "fp16")
    monkeypatch.setattr(fast_cpu, "_enabled", False)
    with pytest.raises(InputError, match="oneDNN"):
        set_precision(model_s, "bf16")


def test_int8_is_cpu_only_and_bf16_autocasts_on_cuda(body_model_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model = random_model("tiny", body_model_dir, torch.device("cuda"))
    with pytest.raises(InputError, match="CPU only"):
        set_precision(model, "int8")
    set_precision(model, "bf16")
    assert model.autocast_dtype == torch.bfloat16
    with torch.no_grad():
        out = model(torch.rand(1, 3, 512, 384, device="cuda"))
    assert torch.isfinite(out.mesh_cam).all()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_command_line_precision(tmp_path, tiny_checkpoint, body_model_dir, precision):
    """main.inference --precision: the same files, the poses close to fp32's."""
    import cv2

    from main import inference

    img = tmp_path / "p.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(img), cv2.GaussianBlur((rng.random((200, 150, 3)) * 255).astype(np.uint8), (5, 5), 2))
    results = {}
    for p in ("fp32", precision):
        out = tmp_path / p
        assert inference.main(["--ckpt", str(tiny_checkpoint), "--input", str(img), "--output", str(out),
                               "--body-model-dir", str(body_model_dir), "--precision", p, "--no-vis"]) == 0
        results[p] = dict(np.load(out / "smplx" / "p_0.npz"))
    diff = torch.cat([rotation_angles(torch.from_numpy(results[precision][k]).reshape(1, -1),
                                      torch.from_numpy(results["fp32"][k]).reshape(1, -1))
                      for k in results["fp32"] if k.endswith("_pose")], 1)  # every joint, as the documented bound
    assert 0 < diff.mean() < POSE_MEAN_BOUND[precision], diff.mean()
