"""One camera for the whole frame: where the people are placed for the exports, and how the overlay is drawn.

SMPLer-X predicts every person in their own crop camera: focal ``5000 / 192 * box width`` px and principal point at
the box centre (the original's convention), so two people's meshes are not in one scene. The *scene camera* is one
pinhole camera for the frame: principal point at the image centre, focal ``F`` (``--scene-focal``; default
``max(width, height)`` px, a ~53 degree field of view across the long side, typical of phones and webcams, which
gives people realistic depths). OpenCV camera frame: x right, y down, z forward, metres.

* Exports (per-frame OBJ / GLB, the animated glTF, BVH) place each person **rigidly**: the mesh keeps its shape and
  orientation and is moved so that its centroid projects through the scene camera onto the pixel where the crop
  camera projected it, at the depth that keeps its apparent size (``z' = z F / f``); ``scene_shift`` is that move
  and ``transl + scene_shift`` the person's translation in the scene (:func:`scene_shift`). The silhouettes then
  match the overlay's up to the perspective difference between the two cameras (measured in tests).
* The overlay maps each person's mesh into the scene camera with an exact, projection-preserving linear map
  (:func:`to_reference_camera`, a shear and scale), so it shows exactly what the network predicted; people occlude
  each other by depth over focal length, the ordering the original's offline renderer used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from common.export.tracks import SceneCamera


def scene_camera(width: int, height: int, focal: float | None = None) -> SceneCamera:
    """The scene camera of a ``width`` x ``height`` frame (module docstring); ``focal`` px or None for the default."""
    return SceneCamera(float(focal) if focal else float(max(width, height)), int(width), int(height))


def scene_shift(vertices: np.ndarray, focal: Sequence[float], princpt: Sequence[float], scene: SceneCamera
                ) -> np.ndarray:
    """(3,) float64 m to add to a person's crop-camera points to place them in the scene camera (module docstring).

    ``vertices`` (V, 3) m in the person's camera (``focal``, ``princpt`` px); the centroid ``c`` projects to
    ``(u, v)``; the scene centroid is ``((u - W/2) z' / F, (v - H/2) z' / F, z')`` with ``z' = c_z F / f_x``."""
    c = np.asarray(vertices, np.float64).mean(0)
    fx, fy = (float(v) for v in focal)
    cx, cy = (float(v) for v in princpt)
    u, v = fx * c[0] / c[2] + cx, fy * c[1] / c[2] + cy
    z = c[2] * scene.focal / fx
    return np.array([(u - scene.width / 2.0) * z / scene.focal, (v - scene.height / 2.0) * z / scene.focal, z]) - c


def to_reference_camera(vertices: np.ndarray, focal: Sequence[float], princpt: Sequence[float],
                        ref_focal: Sequence[float], ref_princpt: Sequence[float], scale: float = 1.0) -> np.ndarray:
    """Map camera-frame points (V, 3) seen with (focal, princpt) to points that the camera (ref_focal, ref_princpt)
    projects onto the same pixels: ``z' = s z``, ``x' = s (fx x + (cx - Cx) z) / Fx``, ``y' = s (fy y + (cy - Cy) z)
    / Fy`` with ``s = scale * Fx / fx``. The map is linear (a shear and scale), so meshes stay meshes; depth is
    ``z / fx`` up to a common factor, the ordering the original's offline renderer used between people.
    Returns float32 (V, 3)."""
    fx, fy = (float(v) for v in focal)
    cx, cy = (float(v) for v in princpt)
    rfx, rfy = (float(v) for v in ref_focal)
    rcx, rcy = (float(v) for v in ref_princpt)
    s = scale * rfx / fx
    a = s * np.array([[fx / rfx, 0.0, (cx - rcx) / rfx], [0.0, fy / rfy, (cy - rcy) / rfy], [0.0, 0.0, 1.0]])
    return (np.asarray(vertices, dtype=np.float64) @ a.T).astype(np.float32)


def render_people(renderer: Any, people: Sequence[Any], faces: np.ndarray,
                  colors: Sequence[Sequence[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render several people, each with its own camera, into one image of the renderer's size.

    ``people``: objects with ``vertices`` (V, 3) m in their camera frame and ``focal`` / ``princpt`` (px of the
    image), e.g. :class:`common.engine.predictor.PersonResult`. Every mesh is mapped into the frame's scene camera
    with :func:`to_reference_camera` (exact projections, consistent depth), scaled so the nearest person's median
    depth is 2 m (projections do not change under a common scale; it keeps depth precision and the clipping planes
    comfortable). Returns rgb float32 (H, W, 3) in [0, 1] and the silhouette mask bool (H, W).
    """
    h, w = renderer.height, renderer.width
    if not people:
        return np.zeros((h, w, 3), np.float32), np.zeros((h, w), bool)
    cam = scene_camera(w, h)
    ref_f, ref_c = (cam.focal, cam.focal), (w / 2.0, h / 2.0)
    mapped = [to_reference_camera(p.vertices, p.focal, p.princpt, ref_f, ref_c) for p in people]
    depths = [float(np.median(v[:, 2])) for v in mapped]
    positive = [d for d in depths if d > 0]
    scale = 2.0 / min(positive) if positive else 1.0
    rgb, mask, _ = renderer.render([v * np.float32(scale) for v in mapped], faces, ref_f, ref_c, colors=colors)
    return rgb, mask


def draw_frame(frame_rgb: np.ndarray, people: Sequence[Any], faces: np.ndarray, renderer: Any | None,
               show_verts: bool = False, boxes_xyxy: np.ndarray | None = None, labels: Sequence[str] | None = None,
               colors: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """The overlay of one frame: meshes (``renderer`` a MeshRenderer of the frame's size) or, with ``show_verts``
    or no renderer, the original's vertex dots (far people first); then ``boxes_xyxy`` (N, 4) px in red when given.
    ``people`` as in :func:`render_people`. Returns uint8 RGB (H, W, 3); the input is not modified."""
    from common.utils.render import draw_boxes, draw_vertices, overlay

    out = np.ascontiguousarray(frame_rgb, dtype=np.uint8)
    if people:
        if renderer is not None and not show_verts:
            rgb, mask = render_people(renderer, people, faces, colors)
            out = overlay(out, rgb, mask)
        else:
            depth = [float(np.median(p.vertices[:, 2])) / float(p.focal[0]) for p in people]
            for i in np.argsort(depth)[::-1]:
                out = draw_vertices(out, people[i].vertices, people[i].focal, people[i].princpt)
    if boxes_xyxy is not None and len(boxes_xyxy):
        out = draw_boxes(out, boxes_xyxy, labels=labels)
    return out if out is not frame_rgb else out.copy()
