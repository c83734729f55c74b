"""Stand-ins for the licence-gated files, so the demo and the tests run on a fresh machine.

* :func:`write_random_checkpoint`: an official-format SMPLer-X checkpoint (``{'epoch', 'network'}`` with
  ``module.`` keys, no config, like the released files) with random weights. The head biases are set so the
  output is a well-formed upright body in front of the camera; the pose is NOT estimated from the image.
* :func:`render_person_image`: an image of the (synthetic or real) SMPL-X body in a known pose with its box, drawn
  by a small painter's-algorithm rasteriser (no GPU or OpenGL needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from common.config import Config
from common.engine.checkpoint import network_checkpoint, save_checkpoint
from common.nets import SMPLerX

# 6D (interleaved) of a 180-degree rotation about x: the SMPL-X body is y-up, the camera frame is y-down.
UPRIGHT_6D = (1.0, 0.0, 0.0, -1.0, 0.0, 0.0)
IDENTITY_6D = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def write_random_checkpoint(path: str | Path, size: str = "s", seed: int = 0) -> Path:
    """Write an official-format checkpoint of the given size with random weights (for demos and tests)."""
    torch.manual_seed(seed)
    cfg = Config()
    cfg.model.encoder_size = size
    model = SMPLerX(cfg.model)
    model.init_weights()
    with torch.no_grad():
        # small output weights: the random features then barely move the result away from the biases below
        for layer in (model.body_regressor.root_pose_out[0], model.body_regressor.body_pose_out[0],
                      model.hand_regressor.hand_pose_out[0], model.face_regressor.jaw_pose_out[0],
                      model.body_regressor.cam_out[0]):
            layer.weight.mul_(0.01)
        root = model.body_regressor.root_pose_out[0]
        root.bias.copy_(torch.tensor(UPRIGHT_6D))
        body = model.body_regressor.body_pose_out[0]
        body.bias.copy_(torch.tensor(IDENTITY_6D).repeat(body.bias.numel() // 6))
        hand = model.hand_regressor.hand_pose_out[0]
        hand.bias.copy_(torch.tensor(IDENTITY_6D).repeat(hand.bias.numel() // 6))
        model.face_regressor.jaw_pose_out[0].bias.copy_(torch.tensor(IDENTITY_6D))
        # depth at which a ~1.7 m body fills the crop (crop height = 1.25 x person): f * 1.7 / (256 / 1.25) m
        t_z = cfg.model.focal[1] * 1.7 / (cfg.model.input_body_shape[0] / 1.25)
        frac = t_z / model.cam_depth_scale
        model.body_regressor.cam_out[0].bias.copy_(torch.tensor([0.0, 0.0, math.log(frac / (1 - frac))]))
        for name in ("lhand_size", "rhand_size", "face_size"):  # ~2 heat-map cells wide boxes
            getattr(model.box_net, name)[2].bias.fill_(2.0)
    return save_checkpoint({"epoch": 0, "network": network_checkpoint(model)}, path)


def render_person_image(body_model, out_path: str | Path, img_size: tuple[int, int] = (480, 640),
                        seed: int = 0) -> tuple[Path, tuple[float, float, float, float]]:
    """Render one posed body onto a plain background; returns (path, xywh person box in px).

    ``body_model`` is a :class:`common.body_model.SMPLXLayer`. The camera looks at the body from 3 m.
    """
    rng = np.random.default_rng(seed)
    h, w = img_size
    body_pose = np.zeros((1, 63), np.float32)
    body_pose[0, 15 * 3 + 2] = -1.1  # left shoulder down (z), joint 16 -> index 15 in body_pose
    body_pose[0, 16 * 3 + 2] = 1.1  # right shoulder down
    body_pose[0, 0] = -0.3  # left hip forward a little
    body_pose[0, 3 * 3] = 0.5  # left knee bent
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    with torch.no_grad():
        verts, _ = body_model(t([[math.pi, 0.0, 0.0]]), t(body_pose), t(np.zeros((1, 45))), t(np.zeros((1, 45))),
                              t(np.zeros((1, 3))), t(rng.normal(0, 0.5, (1, 10))), t(np.zeros((1, 10))))
    v = verts[0].numpy().astype(np.float64)
    v += np.array([0.0, 0.0, 3.0]) - v.mean(0) * np.array([1, 1, 0])
    focal = 0.9 * h / (v[:, 1].max() - v[:, 1].min()) * 3.0 * 0.75
    uv = v[:, :2] / v[:, 2:3] * focal + np.array([w / 2, h / 2])
    img = _rasterise(uv, v, np.asarray(body_model.faces), (h, w))
    x1, y1 = uv.min(0)
    x2, y2 = uv.max(0)
    box = (float(x1), float(y1), float(x2 - x1), float(y2 - y1))
    from common.utils.io import save_image

    return save_image(out_path, img), box


def _rasterise(uv: np.ndarray, v: np.ndarray, faces: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Painter's algorithm with Lambert shading: faces sorted far-to-near, each filled as a polygon. RGB uint8."""
    h, w = shape
    yy = np.linspace(0, 1, h)[:, None, None]
    img = (np.array([200, 210, 225]) * (1 - 0.3 * yy) + np.zeros((1, w, 3))).astype(np.uint8)
    tri = v[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    light = np.array([0.3, -0.4, -1.0])
    shade = np.abs(normal @ (light / np.linalg.norm(light)))
    order = np.argsort(-tri[:, :, 2].mean(1))
    pts = np.round(uv[faces] * 4).astype(np.int32)  # 2 bits of sub-pixel precision for fillPoly
    base = np.array([235, 190, 150])
    for i in order:
        cv2.fillConvexPoly(img, pts[i], tuple(int(c) for c in base * (0.35 + 0.65 * shade[i])), cv2.LINE_AA, 2)
    return img
