"""Loss terms against hand computations, the hand-box remapping and the projection alignment."""

import torch

from common.body_model import joint_sets as js
from common.config import ModelConfig, TrainConfig
from common.nets.losses import _to_box_cells, compute_losses
from common.nets.smpler_x import SMPLerXOutput

B = 2


def _fake_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    # boxes in input_img px (384x512); hands ~ 60 px wide
    lbox = torch.tensor([[100.0, 200, 160, 260], [50, 60, 130, 140]])
    rbox = torch.tensor([[220.0, 210, 280, 270], [200, 300, 260, 360]])
    out = SMPLerXOutput(
        root_pose=r(B, 3), body_pose=r(B, 63), lhand_pose=r(B, 45), rhand_pose=r(B, 45), jaw_pose=r(B, 3),
        shape=r(B, 10), expr=r(B, 10), cam_trans=r(B, 3), joint_img=r(B, 65, 3) * 10,
        joint_img_hand_space=r(B, 65, 3) * 15, lhand_bbox=lbox, rhand_bbox=rbox, face_bbox=lbox.clone(),
        lhand_bbox_center=r(B, 2), lhand_bbox_size=r(B, 2), rhand_bbox_center=r(B, 2), rhand_bbox_size=r(B, 2),
        face_bbox_center=r(B, 2), face_bbox_size=r(B, 2), joint_proj=r(B, 137, 2) * 12,
        joint_cam=r(B, 137, 3), joint_cam_wo_ra=r(B, 137, 3), mesh_cam=r(B, 10475, 3))
    targets = {"smplx_pose": r(B, 159), "smplx_shape": r(B, 10), "smplx_expr": r(B, 10), "joint_cam": r(B, 137, 3),
               "smplx_joint_cam": r(B, 137, 3), "joint_img": r(B, 137, 3) * 12, "smplx_joint_img": r(B, 137, 3) * 12}
    for p in ("lhand", "rhand", "face"):
        targets[f"{p}_bbox_center"], targets[f"{p}_bbox_size"] = r(B, 2), r(B, 2)
    meta = {"smplx_pose_valid": (r(B, 159) > 0.3).float(), "smplx_shape_valid": torch.tensor([1.0, 0.0]),
            "smplx_expr_valid": torch.tensor([0.0, 1.0]), "joint_valid": (r(B, 137, 1) > 0.2).float(),
            "is_3D": torch.tensor([1.0, 0.0]), "smplx_joint_valid": (r(B, 137, 1) > 0.2).float(),
            "joint_trunc": torch.ones(B, 137, 1), "smplx_joint_trunc": torch.ones(B, 137, 1),
            "lhand_bbox_valid": torch.tensor([1.0, 0.0]), "rhand_bbox_valid": torch.tensor([0.0, 0.0]),
            "face_bbox_valid": torch.tensor([1.0, 1.0])}
    return out, targets, meta


def test_parameter_and_3d_terms_by_hand():
    out, t, m = _fake_batch()
    w = TrainConfig()
    loss = compute_losses(out, t, m, ModelConfig(), w)
    pose = torch.cat((out.root_pose, out.body_pose, out.lhand_pose, out.rhand_pose, out.jaw_pose), 1)
    assert torch.isclose(loss["smplx_pose"], ((pose - t["smplx_pose"]).abs() * m["smplx_pose_valid"]).mean() * 10)
    assert torch.isclose(loss["smplx_shape"], (out.shape - t["smplx_shape"])[0].abs().sum() / 20)
    assert torch.isclose(loss["smplx_expr"], (out.expr - t["smplx_expr"])[1].abs().sum() / 20)
    jc = ((out.joint_cam_wo_ra - t["joint_cam"]).abs() * m["joint_valid"])[0].sum() / (B * 137 * 3) * 100
    assert torch.isclose(loss["joint_cam"], jc)  # sample 1 is not 3D
    assert torch.isclose(loss["rhand_bbox"], torch.tensor(0.0))  # no valid right-hand box
    lb = ((out.lhand_bbox_center - t["lhand_bbox_center"]).abs() + (out.lhand_bbox_size - t["lhand_bbox_size"]).abs())
    assert torch.isclose(loss["lhand_bbox"], lb[0].sum() / (B * 2))


def test_box_cell_mapping_by_hand():
    cfg = ModelConfig()
    box = torch.tensor([[48.0, 64.0, 96.0, 112.0]])  # input_body px: 48 px = 3 body cells wide
    x, y = _to_box_cells(torch.tensor([[3.0, 4.5]]), torch.tensor([[4.0, 7.0]]), box, cfg)
    # body cell 3 is the box's left edge (48/16); 16 hand cells span the 3 body cells
    assert torch.allclose(x, torch.tensor([[0.0, 1.5 * 16 / 3]])) and torch.allclose(y, torch.tensor([[0.0, 16.0]]))


def test_perfect_hand_and_projection_targets_give_zero():
    out, t, m = _fake_batch(1)
    cfg = ModelConfig()
    s = 0.5  # input_img -> input_body px
    # targets in body cells that map exactly onto the predicted hand-space joints
    for part, rows65 in (("lhand", range(25, 45)), ("rhand", range(45, 65))):
        box = getattr(out, f"{part}_bbox") * s
        w_cells = (box[:, 2] - box[:, 0]) / 192 * 12
        h_cells = (box[:, 3] - box[:, 1]) / 256 * 16
        hs = out.joint_img_hand_space[:, rows65]
        bx = hs[..., 0] * w_cells[:, None] / 16 + box[:, None, 0] / 192 * 12
        by = hs[..., 1] * h_cells[:, None] / 16 + box[:, None, 1] / 256 * 16
        for key in ("joint_img", "smplx_joint_img"):
            t[key][:, rows65] = torch.stack((bx, by, hs[..., 2]), -1)
    t["joint_img"][:, :25] = out.joint_img_hand_space[:, :25]
    t["smplx_joint_img"][:, :25] = out.joint_img_hand_space[:, :25]
    t["joint_img"][:, :65, :2] = t["joint_img"][:, :65, :2]
    proj = t["joint_img"][:, :, :2].clone()
    proj[:, 25:65] += torch.tensor([0.7, -0.4])  # hands shifted: removed by the per-sample alignment
    proj[:, 65:] += torch.tensor([0.2, 0.3])  # face shifted: likewise (a valid face box exists)
    out.joint_proj = proj
    loss = compute_losses(out, t, m, cfg, TrainConfig())
    assert loss["joint_img"] < 1e-5 and loss["smplx_joint_img"] < 1e-5
    assert loss["joint_proj"] < 1e-5
    out.joint_proj = proj + torch.tensor([0.5, 0.0])  # a body shift is not aligned away: 25 joints x 0.5 cells
    expected = B * 25 * 0.5 / (B * 137 * 2)
    assert torch.isclose(compute_losses(out, t, m, cfg, TrainConfig())["joint_proj"], torch.tensor(expected))


def test_hand_targets_are_remapped_without_any_valid_hand_box():
    out, t, m = _fake_batch(2)
    a = compute_losses(out, t, m, ModelConfig(), TrainConfig())
    m2 = dict(m, lhand_bbox_valid=torch.zeros(B), rhand_bbox_valid=torch.zeros(B))
    b = compute_losses(out, t, m2, ModelConfig(), TrainConfig())
    for k in ("joint_img", "smplx_joint_img", "joint_proj"):
        assert torch.isclose(a[k], b[k]), k
    assert b["lhand_bbox"] == 0


def test_truncation_outside_the_hand_box():
    out, t, m = _fake_batch(3)
    t["joint_img"][:, 25:45, 0] = -50.0  # far left of every box: outside -> truncated, no 2D hand loss
    base = compute_losses(out, t, m, ModelConfig(), TrainConfig())
    t["joint_img"][:, 25:45, 1] += 3.0  # moving truncated targets changes nothing
    moved = compute_losses(out, t, m, ModelConfig(), TrainConfig())
    assert torch.isclose(base["joint_img"], moved["joint_img"]) and torch.isclose(base["joint_proj"],
                                                                                   moved["joint_proj"])


def test_losses_from_the_real_model_backpropagate(body_model_dir):
    from common.body_model import SMPLXLayer
    from common.config import load_config
    from common.nets import SMPLerX

    cfg = load_config("smpler_x_tiny")
    model = SMPLerX(cfg.model).attach_body_model(SMPLXLayer(body_model_dir))
    model.train()
    out = model(torch.rand(B, 3, 512, 384))
    _, t, m = _fake_batch(4)
    loss = compute_losses(out, t, m, cfg.model, cfg.train)
    total = sum(loss.values())
    total.backward()
    assert torch.isfinite(total) and set(loss) == {
        "smplx_pose", "smplx_shape", "smplx_expr", "joint_cam", "smplx_joint_cam", "lhand_bbox", "rhand_bbox",
        "face_bbox", "joint_proj", "joint_img", "smplx_joint_img"}
    assert model.body_position_net.conv[0].weight.grad.abs().sum() > 0
    assert model.encoder.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0
    assert js.JOINT_NUM == t["joint_img"].shape[1]
