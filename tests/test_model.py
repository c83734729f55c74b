"""The network: sizes, checkpoint key layout, and every conversion in the forward pass against independent
computations (hand un-flipping, box restore, camera translation, projection, part-relative joints)."""

import math

import numpy as np
import pytest
import torch

from common.body_model import joint_sets as js
from common.config import Config, load_config
from common.nets import MODULE_NAMES, SMPLerX, count_parameters
from common.nets.vit import VIT_SIZES, vit_param_count
from common.utils.geometry import axis_angle_to_rotmat, restore_bbox

# Totals of the original's instantiated models (its README: 32M / 103M / 327M / 662M).
ORIGINAL_PARAMS = {"s": 32_008_024, "b": 102_939_928, "l": 326_654_872, "h": 661_827_096}
ORIGINAL_STATE_ENTRIES = {"s": 223, "b": 223, "l": 367, "h": 463}


def _meta_model(size: str) -> SMPLerX:
    cfg = Config()
    cfg.model.encoder_size = size
    with torch.device("meta"):
        return SMPLerX(cfg.model)


@pytest.mark.parametrize("size", ["s", "b", "l", "h"])
def test_parameter_counts_and_key_layout(size):
    m = _meta_model(size)
    assert count_parameters(m) == ORIGINAL_PARAMS[size]
    assert count_parameters(m.encoder) == vit_param_count(size)
    sd = m.state_dict()
    assert len(sd) == ORIGINAL_STATE_ENTRIES[size]
    spec = VIT_SIZES[size]
    c = spec.embed_dim
    # key names and shapes the released checkpoints use (facts sheet section 2.12)
    expect = {
        "encoder.task_tokens": (1, 31, c), "encoder.pos_embed": (1, 193, c),
        "encoder.patch_embed.proj.weight": (c, 3, 16, 16),
        f"encoder.blocks.{spec.depth - 1}.attn.qkv.weight": (3 * c, c),
        "encoder.last_norm.weight": (c,), "body_position_net.conv.0.weight": (25 * 16, c, 1, 1),
        "body_regressor.body_conv.0.weight": (512, c), "body_regressor.root_pose_out.0.weight": (6, 25 * 515),
        "body_regressor.body_pose_out.0.weight": (126, 25 * 515), "body_regressor.shape_out.0.weight": (10, c),
        "body_regressor.cam_out.0.weight": (3, c), "box_net.deconv.0.weight": (c + 400, 256, 4, 4),
        "box_net.deconv.7.running_var": (256,), "box_net.bbox_center.0.weight": (3, 256, 1, 1),
        "box_net.face_size.2.weight": (2, 256), "hand_roi_net.deconv.0.weight": (c, c // 2, 4, 4),
        "hand_roi_net.deconv.3.weight": (c // 2, c // 4, 4, 4), "hand_roi_net.conv.0.weight": (c, c // 4, 1, 1),
        "hand_position_net.conv.0.weight": (20 * 16, c, 1, 1), "hand_regressor.hand_conv.1.running_mean": (512,),
        "hand_regressor.hand_pose_out.0.weight": (90, 20 * 515), "face_regressor.expr_out.0.weight": (10, c),
        "face_regressor.jaw_pose_out.0.weight": (6, c),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert list(sd)[:3] == ["encoder.task_tokens", "encoder.pos_embed", "encoder.patch_embed.proj.weight"]
    assert {k.split(".")[0] for k in sd} == set(MODULE_NAMES)
    assert not any("smplx_layer" in k for k in sd)


@pytest.fixture(scope="module")
def tiny_model(body_model_dir):
    from common.body_model import SMPLXLayer

    torch.manual_seed(0)
    cfg = load_config("smpler_x_tiny")
    m = SMPLerX(cfg.model)
    m.init_weights()
    with torch.no_grad():  # make outputs input-dependent and boxes non-degenerate
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    m.attach_body_model(SMPLXLayer(body_model_dir))
    return m.eval()


@pytest.fixture(scope="module")
def tiny_out(tiny_model):
    torch.manual_seed(1)
    img = torch.rand(3, 3, 512, 384)
    with torch.no_grad():
        return tiny_model(img), img


def test_output_shapes_and_keys(tiny_out):
    out, _ = tiny_out
    d = out.to_dict()
    shapes = {"joint_img": (3, 65, 3), "smplx_joint_proj": (3, 137, 2), "smplx_mesh_cam": (3, 10475, 3),
              "smplx_root_pose": (3, 3), "smplx_body_pose": (3, 63), "smplx_lhand_pose": (3, 45),
              "smplx_rhand_pose": (3, 45), "smplx_jaw_pose": (3, 3), "smplx_shape": (3, 10), "smplx_expr": (3, 10),
              "cam_trans": (3, 3), "lhand_bbox": (3, 4), "rhand_bbox": (3, 4), "face_bbox": (3, 4)}
    assert {k: tuple(v.shape) for k, v in d.items()} == shapes
    assert all(torch.isfinite(v).all() for v in d.values())


def test_camera_translation_and_mesh(tiny_model, tiny_out):
    out, _ = tiny_out
    k = math.sqrt(5000 * 5000 * 2.5**2 / (256 * 192))
    assert math.isclose(tiny_model.cam_depth_scale, k) and 56.38 < k < 56.39
    assert (out.cam_trans[:, 2] > 0).all() and (out.cam_trans[:, 2] < k).all()
    verts, joints = tiny_model.body_model(out.root_pose, out.body_pose, out.lhand_pose, out.rhand_pose,
                                          out.jaw_pose, out.shape, out.expr)
    assert torch.allclose(out.mesh_cam, verts + out.cam_trans[:, None], atol=1e-6)
    j = joints[:, list(js.JOINT_IDX)]
    # independent pinhole projection in the 192x256 input, then to 12x16 heat-map cells
    z = j[..., 2] + out.cam_trans[:, None, 2]
    u = (j[..., 0] + out.cam_trans[:, None, 0]) / z * 5000 + 96
    v = (j[..., 1] + out.cam_trans[:, None, 1]) / z * 5000 + 128
    assert torch.allclose(out.joint_proj, torch.stack((u * 12 / 192, v * 16 / 256), -1), atol=1e-3)
    # pelvis-relative, and hands / face relative to wrists / neck
    rel = j - j[:, :1]
    assert torch.allclose(out.joint_cam_wo_ra, rel, atol=1e-6)
    assert torch.allclose(out.joint_cam[:, 25:45], rel[:, 25:45] - rel[:, 12:13], atol=1e-6)
    assert torch.allclose(out.joint_cam[:, 45:65], rel[:, 45:65] - rel[:, 13:14], atol=1e-6)
    assert torch.allclose(out.joint_cam[:, 65:], rel[:, 65:] - rel[:, 7:8], atol=1e-6)
    assert torch.allclose(out.joint_cam[:, :25], rel[:, :25])


def test_boxes_and_hand_joints_in_body_space(tiny_out):
    out, _ = tiny_out
    for part, ext in (("lhand", 2.0), ("rhand", 2.0), ("face", 1.5)):
        c, s = getattr(out, f"{part}_bbox_center"), getattr(out, f"{part}_bbox_size")
        box = restore_bbox(c, s, (16, 12), (256, 192), 1.0, ext)
        assert torch.allclose(getattr(out, f"{part}_bbox"), box * 2)  # 192x256 -> 384x512 px
        w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        assert torch.allclose(w, h, rtol=1e-5)  # square
    # hand joints: hand-box cells (16 per box side) -> body cells (box / 16 px per cell)
    for part, rows in (("lhand", slice(25, 45)), ("rhand", slice(45, 65))):
        box = getattr(out, f"{part}_bbox") / 2 / 16  # body-input px -> body hm cells
        local = out.joint_img_hand_space[:, rows]
        x = local[..., 0] * (box[:, 2:3] - box[:, 0:1]) / 16 + box[:, 0:1]
        y = local[..., 1] * (box[:, 3:4] - box[:, 1:2]) / 16 + box[:, 1:2]
        assert torch.allclose(out.joint_img[:, rows, 0], x, atol=1e-4)
        assert torch.allclose(out.joint_img[:, rows, 1], y, atol=1e-4)
        assert torch.equal(out.joint_img[:, rows, 2], local[..., 2])
    assert torch.equal(out.joint_img[:, :25], out.joint_img_hand_space[:, :25])


def test_left_hand_is_mirrored_in_and_out(tiny_model, monkeypatch):
    """Both hands go through the same right-hand head; left crops are mirrored in, and their joints and
    rotations mirrored back out. Feed known head outputs and check the un-mirroring."""
    m = tiny_model
    b = 2
    rv = torch.tensor([[0.3, -0.2, 0.5], [-0.1, 0.4, 0.2]])
    R = axis_angle_to_rotmat(rv)  # one rotation per batch row, used for every hand joint
    six = R[:, :, :2].reshape(b, 6)
    hand_6d = torch.cat([six.repeat(1, 15), six.flip(0).repeat(1, 15)])  # rows: left hands, then right hands
    coords = torch.rand(2 * b, 20, 3) * 15
    seen = {}

    def fake_position(feat):
        seen["feat"] = feat.clone()
        return None, coords

    monkeypatch.setattr(m.hand_position_net, "forward", fake_position)
    monkeypatch.setattr(m.hand_regressor, "forward", lambda feat, j: hand_6d)
    with torch.no_grad():
        out = m(torch.rand(b, 3, 512, 384))
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    lh = axis_angle_to_rotmat(out.lhand_pose.reshape(b, 15, 3))
    rh = axis_angle_to_rotmat(out.rhand_pose.reshape(b, 15, 3))
    assert torch.allclose(lh, (M @ R @ M)[:, None].expand(b, 15, 3, 3), atol=1e-5)  # mirrored back
    assert torch.allclose(rh, R.flip(0)[:, None].expand(b, 15, 3, 3), atol=1e-5)
    assert torch.allclose(out.joint_img_hand_space[:, 25:45, 0], 15 - coords[:b, :, 0])
    assert torch.equal(out.joint_img_hand_space[:, 25:45, 1:], coords[:b, :, 1:])
    assert torch.equal(out.joint_img_hand_space[:, 45:65], coords[b:])
    # the left-hand RoI features are mirrored along the width before the shared hand head
    feat = seen["feat"]
    assert feat.shape == (2 * b, m.feat_dim, 16, 16)


def test_hand_roi_left_crop_is_the_mirror_of_the_box(tiny_model):
    roi = tiny_model.hand_roi_net
    feat = torch.rand(1, roi.deconv[0].in_channels, 16, 12)
    box = torch.tensor([[40.0, 60.0, 104.0, 124.0]])
    from torchvision.ops import roi_align

    with torch.no_grad():
        up = roi.deconv(feat)
        rois = torch.tensor([[0, 40 / 4, 60 / 4, 104 / 4, 124 / 4]])
        ref = roi_align(up, rois, (16, 16), 1.0, 0, aligned=False)
        both = roi(feat, box, box)
    conv = roi.conv
    assert torch.allclose(both[1:], conv(ref), atol=1e-6)
    assert torch.allclose(both[:1], conv(ref.flip(3)), atol=1e-6)


def test_batch_independence(tiny_model, tiny_out):
    out, img = tiny_out
    with torch.no_grad():
        single = tiny_model(img[1:2])
    for k, v in single.to_dict().items():
        assert torch.allclose(v[0], out.to_dict()[k][1], atol=1e-4), k


def test_all_layer_joints_option(tiny_model, tiny_out):
    out, img = tiny_out
    tiny_model.cfg.all_layer_joints = True
    try:
        with torch.no_grad():
            o144 = tiny_model(img)
    finally:
        tiny_model.cfg.all_layer_joints = False
    assert o144.joint_proj.shape == (3, 144, 2)
    assert torch.allclose(o144.joint_proj[:, list(js.JOINT_IDX)], out.joint_proj, atol=1e-5)


def test_without_body_model_and_on_float64(tiny_model, tiny_out, body_model_dir):
    from common.body_model import SMPLXLayer

    out, img = tiny_out
    bare = SMPLerX(tiny_model.cfg)
    bare.load_state_dict(tiny_model.state_dict())
    bare.eval()
    with torch.no_grad():
        o = bare(img)
    assert o.mesh_cam is None and o.joint_proj is None
    assert torch.allclose(o.root_pose, out.root_pose, atol=1e-6)
    bare.attach_body_model(SMPLXLayer(body_model_dir)).double()
    assert bare.body_model is not None
    with torch.no_grad():
        o64 = bare(img.double())
    assert o64.mesh_cam.dtype == torch.float64
    assert np.abs(o64.mesh_cam.numpy() - out.mesh_cam.numpy()).max() < 1e-3


def test_training_mode_runs_backward_with_checkpointing(body_model_dir):
    from common.body_model import SMPLXLayer

    cfg = load_config("smpler_x_tiny", ["model.activation_checkpointing=true"])
    m = SMPLerX(cfg.model)
    m.attach_body_model(SMPLXLayer(body_model_dir))
    m.train()
    out = m(torch.rand(2, 3, 512, 384))
    loss = out.joint_cam.abs().mean() + out.shape.abs().mean() + out.joint_img_hand_space.mean()
    loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert grads["encoder.blocks.0.attn.qkv.weight"].abs().sum() > 0
    assert grads["hand_regressor.hand_pose_out.0.weight"].abs().sum() > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_and_bf16_autocast_runs(tiny_model, tiny_out):
    out, img = tiny_out
    model = tiny_model.to("cuda")
    try:
        with torch.no_grad():
            gpu = model(img.cuda())
            assert torch.allclose(gpu.mesh_cam.cpu(), out.mesh_cam, atol=1e-3)
            assert torch.allclose(gpu.root_pose.cpu(), out.root_pose, atol=1e-3)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                half = model(img.cuda())
        assert torch.isfinite(half.mesh_cam).all()
    finally:
        model.to("cpu")
