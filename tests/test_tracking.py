"""Multi-person tracking and One-Euro smoothing (common/engine/tracking.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from common.engine.tracking import IoUTracker, OneEuroFilter, ParamSmoother


def box(cx: float, cy: float, w: float, h: float) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker: IoUTracker, frames: list[dict[str, list[float]]], seed: int = 0) -> dict[str, list[int]]:
    """Feed frames of named boxes in a shuffled order each frame; return each name's ids over time."""
    rng = np.random.default_rng(seed)
    ids: dict[str, list[int]] = {}
    for dets in frames:
        names = list(dets)
        order = rng.permutation(len(names))
        boxes = np.array([dets[names[i]] for i in order]).reshape(-1, 4)
        out = tracker.update(boxes, np.ones(len(boxes)))
        assert out.dtype == np.int64 and out.shape == (len(names),)
        for j, i in enumerate(order):
            ids.setdefault(names[i], []).append(int(out[j]))
    return ids


def test_ids_stable_for_crossing_people() -> None:
    """Two people walk through each other (full overlap mid-way) while a third stands still."""
    frames = []
    for t in range(40):
        frames.append({"a": box(100 + 12 * t, 300, 100, 300),  # walks right
                       "b": box(580 - 12 * t, 310, 110, 320),  # walks left, crosses a around t = 20
                       "c": box(900, 300, 90, 280)})
    ids = run(IoUTracker(iou_threshold=0.3, max_age=5), frames)
    assert all(len(set(v)) == 1 for v in ids.values()), ids
    assert len({v[0] for v in ids.values()}) == 3


def test_without_motion_model_crossing_swaps() -> None:
    """The same scene with the motion model off swaps or loses ids: the velocity prediction is what keeps them."""
    frames = [{"a": box(100 + 12 * t, 300, 100, 300), "b": box(580 - 12 * t, 300, 100, 300)} for t in range(40)]
    ids = run(IoUTracker(velocity_smoothing=1.0), frames)
    assert any(len(set(v)) > 1 for v in ids.values())


def test_short_occlusion_keeps_id_long_absence_does_not() -> None:
    tracker = IoUTracker(iou_threshold=0.3, max_age=5)
    frames = [{"a": box(200 + 5 * t, 300, 100, 300)} for t in range(10)]
    frames += [{} for _ in range(4)]  # hidden for 4 frames (<= max_age): the track coasts on its velocity
    frames += [{"a": box(200 + 5 * t, 300, 100, 300)} for t in range(14, 20)]
    ids = run(tracker, frames)
    assert set(ids["a"]) == {0}

    frames = [{} for _ in range(6)]  # the person leaves for longer than max_age ...
    frames += [{"new": box(200 + 5 * 20, 300, 100, 300)} for _ in range(3)]  # ... someone enters at the same spot
    ids = run(tracker, frames)
    assert set(ids["new"]) == {1}
    assert tracker.active_ids == [1]


def test_person_leaving_and_new_person_entering() -> None:
    tracker = IoUTracker(max_age=3)
    frames = [{"a": box(100, 300, 100, 300), "b": box(500, 300, 100, 300)} for _ in range(5)]
    frames += [{"b": box(500, 300, 100, 300)} for _ in range(5)]  # a leaves
    frames += [{"b": box(500, 300, 100, 300), "c": box(800, 300, 100, 300)} for _ in range(5)]  # c enters
    ids = run(tracker, frames)
    assert set(ids["a"]) == {0} and set(ids["b"]) == {1} and set(ids["c"]) == {2}
    assert sorted(tracker.active_ids) == [1, 2]
    tracker.reset()
    assert tracker.update(np.array([box(1, 1, 1, 1)])).tolist() == [0]


def test_one_euro_is_exponential_smoothing_when_beta_is_zero() -> None:
    fc, fps = 2.0, 30.0
    f = OneEuroFilter(min_cutoff=fc, beta=0.0)
    r = 2 * np.pi * fc / fps
    alpha = r / (r + 1)
    out = [f(np.array([0.0, 10.0]), 0.0)]
    out += [f(np.array([1.0, 10.0]), n / fps) for n in range(1, 6)]
    n = np.arange(6)
    np.testing.assert_allclose([o[0] for o in out], np.where(n == 0, 0.0, 1 - (1 - alpha) ** n), rtol=1e-12)
    np.testing.assert_allclose([o[1] for o in out], 10.0)  # a constant stays exactly constant
    np.testing.assert_array_equal(f(np.array([5.0, 5.0]), 5 / fps), out[-1])  # a repeated time stamp: no update


def test_one_euro_reduces_jitter_and_follows_a_step() -> None:
    """At 30 fps with (min_cutoff 1 Hz, beta 0.5): noise of std 0.05 on a still signal drops >= 2.5x and its
    frame-to-frame jitter >= 5x, while a unit step is followed to 90% within 3 frames (0.1 s)."""
    fps = 30.0
    t = np.arange(300) / fps
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.05, size=(300, 4))  # four independent channels, filtered as one array
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    y = np.stack([f(x, ti) for x, ti in zip(noise, t)])
    assert noise[30:].std() / y[30:].std() > 2.5
    assert np.diff(noise[30:], axis=0).std() / np.diff(y[30:], axis=0).std() > 5

    step = np.where(t >= 1.0, 1.0, 0.0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    ys = np.array([f(np.array(x), ti) for x, ti in zip(step, t)])
    lag = int(np.argmax(ys >= 0.9)) - 30
    assert lag <= 3
    assert abs(ys[-1] - 1.0) < 1e-3 and ys.max() <= 1.0 + 1e-9  # settles, no overshoot
    # the same step through the non-adaptive filter (beta = 0) lags about 4x more
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    ys0 = np.array([f(np.array(x), ti) for x, ti in zip(step, t)])
    assert int(np.argmax(ys0 >= 0.9)) - 30 >= 4 * max(lag, 1) - 1


def test_param_smoother_handles_axis_angle_wrap_around() -> None:
    """Rotations by pi - 0.01 and -(pi - 0.01) about z are 0.02 rad apart; averaging axis-angle would give ~identity,
    filtering rotation matrices gives a rotation near both."""
    a = np.array([[0.0, 0.0, np.pi - 0.01]], np.float32)
    b = -a
    smoother = ParamSmoother(min_cutoff=1.0, beta=0.0)
    smoother(0, {"global_orient": a, "betas": np.zeros((1, 10), np.float32)}, 0.0)
    out = smoother(0, {"global_orient": b, "betas": np.ones((1, 10), np.float32)}, 1 / 30)
    assert out["global_orient"].shape == (1, 3) and out["global_orient"].dtype == np.float32
    r = Rotation.from_rotvec(out["global_orient"].astype(np.float64))
    for target in (a, b):
        assert (r.inv() * Rotation.from_rotvec(target.astype(np.float64))).magnitude()[0] < 0.021
    assert np.linalg.norm(out["global_orient"]) > 3.0  # far from the wrong axis-angle average (0)
    r_alpha = 2 * np.pi / 30 / (2 * np.pi / 30 + 1)  # other keys: plain exponential smoothing
    np.testing.assert_allclose(out["betas"], r_alpha, rtol=1e-6)
    smoother.prune([])
    fresh = smoother(0, {"global_orient": b}, 2 / 30)  # a pruned track starts over: first value passes through
    np.testing.assert_allclose(Rotation.from_rotvec(fresh["global_orient"].astype(np.float64)).as_matrix(),
                               Rotation.from_rotvec(b.astype(np.float64)).as_matrix(), atol=1e-5)


def test_param_smoother_output_is_a_rotation() -> None:
    rng = np.random.default_rng(1)
    smoother = ParamSmoother(min_cutoff=0.5, beta=0.1)
    for i in range(10):
        pose = (Rotation.from_rotvec(np.tile([0.3, -0.2, 0.5], (21, 1))) *
                Rotation.from_rotvec(rng.normal(0, 0.1, (21, 3)))).as_rotvec()
        out = smoother(3, {"body_pose": pose}, i / 30)["body_pose"]
        mats = Rotation.from_rotvec(out).as_matrix()
        np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (21, 3, 3)), atol=1e-9)
    err = (Rotation.from_rotvec(out) * Rotation.from_rotvec(np.tile([0.3, -0.2, 0.5], (21, 1))).inv()).magnitude()
    assert err.mean() < 0.1  # near the underlying pose


def test_validation() -> None:
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError):
        IoUTracker(iou_threshold=1.5)
    f = OneEuroFilter()
    f(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros(4), 0.1)
