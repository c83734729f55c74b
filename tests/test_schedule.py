"""The detection schedule (common/video/schedule.py): detector on key frames, boxes interpolated in between, bisection
where people enter, leave or move fast. Boxes here come from known trajectories, so every answer is checked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from common.engine.detector import box_iou
from common.video.schedule import DetectionSchedule, match_people


@dataclass
class F:
    index: int
    time_s: float
    rgb: np.ndarray


def frames(n: int, fps: float = 30.0) -> list[F]:
    return [F(i, i / fps, np.zeros((4, 4, 3), np.uint8)) for i in range(n)]


class Oracle:
    """A detector that returns the true boxes of ``truth(frame index) -> (N, 4) xyxy`` and records its calls."""

    def __init__(self, truth):
        self.truth, self.calls = truth, []

    def __call__(self, fs):
        self.calls.append([f.index for f in fs])
        return [(self.truth(f.index), np.full(len(self.truth(f.index)), 0.9)) for f in fs]

    @property
    def frames(self) -> list[int]:
        return sorted(i for c in self.calls for i in c)


def keep_all(boxes, scores, rgb):
    return boxes, scores


def walker(i: int, x0: float = 100.0, v: float = 3.0) -> np.ndarray:
    """A person box moving right at ``v`` px/frame (constant velocity), 80 x 200 px."""
    return np.array([x0 + v * i, 50.0, x0 + v * i + 80.0, 250.0])


def test_constant_motion_is_interpolated_exactly_with_few_detections():
    det = Oracle(lambda i: np.array([walker(i), walker(i, 400.0, -2.0)]))
    out = list(DetectionSchedule(det, keep_all, every=8)(frames(41)))
    assert [s.frame.index for s in out] == list(range(41))
    assert det.frames == [0, 8, 16, 24, 32, 40]  # nobody entered or left, motion small: key frames only
    for s in out:
        truth = det.truth(s.frame.index)
        assert s.detected == (s.frame.index % 8 == 0)
        assert np.allclose(s.boxes, truth, atol=1e-9), s.frame.index  # linear motion: exact


def test_a_person_entering_is_found_on_the_frame_of_entry():
    enter = 13

    def truth(i):
        people = [walker(i)]
        if i >= enter:
            people.append(walker(i, 500.0, -1.0))
        return np.array(people)

    det = Oracle(truth)
    out = list(DetectionSchedule(det, keep_all, every=8)(frames(33)))
    counts = [len(s.boxes) for s in out]
    assert counts == [len(truth(i)) for i in range(33)]  # never a frame without the newcomer, never a ghost
    assert 12 in det.frames and 13 in det.frames  # bisection down to the frame pair around the entry
    assert len(det.frames) < 14
    for s in out:
        assert np.allclose(np.sort(s.boxes, 0), np.sort(truth(s.frame.index), 0), atol=1e-9)


def test_fast_motion_gets_more_key_frames():
    slow, fast = Oracle(lambda i: np.array([walker(i, v=2.0)])), Oracle(lambda i: np.array([walker(i, v=12.0)]))
    list(DetectionSchedule(slow, keep_all, every=8, min_iou=0.5)(frames(33)))
    list(DetectionSchedule(fast, keep_all, every=8, min_iou=0.5)(frames(33)))
    assert len(slow.frames) == 5 and len(fast.frames) > len(slow.frames)
    # the fast walker's key frames are close enough that consecutive ones overlap by the required IoU
    keys = fast.frames
    ious = [box_iou(walker(a, v=12.0)[None], walker(b, v=12.0)[None])[0, 0] for a, b in zip(keys, keys[1:])]
    assert min(ious) >= 0.5 or all(b - a == 1 for a, b in zip(keys, keys[1:]))


def test_every_one_detects_every_frame_in_chunks_and_end_of_stream():
    det = Oracle(lambda i: np.array([walker(i)]))
    out = list(DetectionSchedule(det, keep_all, every=1, chunk=4)(frames(10)))
    assert det.calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and all(s.detected for s in out)
    det = Oracle(lambda i: np.array([walker(i)]))
    out = list(DetectionSchedule(det, keep_all, every=8)(frames(11)))  # a short last segment: 8 -> 10
    assert [s.frame.index for s in out] == list(range(11)) and det.frames == [0, 8, 10]
    assert list(DetectionSchedule(det, keep_all, every=8)([])) == []


def test_mid_frames_of_one_level_are_detected_in_one_call():
    # two people swap places quickly: the segment is split down, each level's mid-frames batched
    det = Oracle(lambda i: np.array([walker(i, 100.0, 25.0), walker(i, 500.0, -25.0)]))
    list(DetectionSchedule(det, keep_all, every=8)(frames(9)))
    assert det.calls[:2] == [[0], [8]] and det.calls[2] == [4] and det.calls[3] == [2, 6]


def test_selection_applies_at_key_frames():
    det = Oracle(lambda i: np.array([walker(i), [0, 0, 5, 5]]))
    out = list(DetectionSchedule(det, lambda b, s, rgb: (b[:1], s[:1]), every=4)(frames(9)))
    assert all(len(s.boxes) == 1 for s in out)


def test_match_people():
    a = np.array([[0, 0, 10, 10], [100, 0, 110, 10]], float)
    assert match_people(a, a[::-1], 0.5) == [(0, 1), (1, 0)]
    assert match_people(a, a[:1], 0.5) is None
    assert match_people(a, a + [6, 0, 6, 0], 0.5) is None and match_people(a, a + [2, 0, 2, 0], 0.5) is not None
    assert match_people(a[:0], a[:0], 0.5) == []
    with pytest.raises(ValueError):
        DetectionSchedule(lambda f: [], keep_all, every=0)


def test_demo_clip_boxes_followed_on_skipped_frames(tmp_path, body_model_dir, tiny_checkpoint):
    """The demo's synthetic clip (two people walking while their poses blend: arms and legs change the box extent),
    its true boxes as the detector, one key frame in 6 at most: the boxes of every skipped frame overlap the true
    box of their person with IoU >= 0.7, with the detector on well under half of the frames."""
    from common.engine.detector import xywh_to_xyxy
    from common.utils import render
    from data.synthetic_clip import write_synthetic_clip
    from main import video_inference as vi

    if not render.is_available():
        pytest.skip("no EGL/OpenGL context to render the clip")
    clip = write_synthetic_clip(tmp_path / "clip", body_model_dir, num_frames=36)
    out = tmp_path / "out"
    code = vi.main(["--ckpt", str(tiny_checkpoint), "--input", str(clip["video"]), "--output", str(out),
                    "--body-model-dir", str(body_model_dir), "--boxes", str(clip["boxes"]), "--multi_person",
                    "--track", "--no-render", "--no-animation", "--no-progress", "--detect-every", "6"])
    assert code == 0
    s = np.load(out / f"{clip['video'].stem}.npz")
    gt = np.load(clip["gt"])["boxes"]  # (F, P, 4) xywh
    frames_detected = len(set(s["frame_index"][s["detected"]].tolist()))
    assert frames_detected <= 36 // 3, frames_detected
    skipped = np.flatnonzero(~s["detected"])
    assert len(skipped) >= 40
    ious = [box_iou(xywh_to_xyxy(s["bbox_input"][i][None]), xywh_to_xyxy(gt[s["frame_index"][i]])).max()
            for i in skipped]
    assert min(ious) >= 0.7, (min(ious), float(np.mean(ious)))
