"""Headless mesh rendering and 2-D overlays (common/utils/render.py), checked against independent projections."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.utils import render
from common.utils.render import (
    AMBIENT,
    DIFFUSE,
    LIGHT_DIR,
    MeshRenderer,
    RendererUnavailable,
    draw_boxes,
    draw_vertices,
    overlay,
)

needs_gl = pytest.mark.skipif(not render.is_available(), reason="no EGL/OpenGL context (see common/utils/render.py)")

W, H = 320, 240
FOCAL, PRINCPT = (300.0, 280.0), (150.3, 110.7)  # fx != fy and an off-centre principal point catch axis mix-ups
SQUARE_FACES = np.array([[0, 1, 2], [0, 2, 3]])


def rect(x1: float, y1: float, x2: float, y2: float, z: float) -> np.ndarray:
    """A rectangle in the plane z (m, camera frame) as 4 vertices (use SQUARE_FACES)."""
    return np.array([[x1, y1, z], [x2, y1, z], [x2, y2, z], [x1, y2, z]], dtype=np.float32)


def project(v: np.ndarray, focal=FOCAL, princpt=PRINCPT) -> np.ndarray:
    return v[:, :2] / v[:, 2:3] * np.asarray(focal) + np.asarray(princpt)


def reference_mask(vertices: np.ndarray, faces: np.ndarray, w: int = W, h: int = H, focal=FOCAL,
                   princpt=PRINCPT) -> np.ndarray:
    """Independent silhouette: pixels whose centre (integer coordinates, OpenCV convention) lies inside a triangle
    projected with the same K, by edge functions in numpy (triangles in chunks, each over its pixel bounding box)."""
    tri = project(vertices.astype(np.float64), focal, princpt)[faces]  # (F, 3, 2)
    lo, hi = np.ceil(tri.min(axis=1)).astype(int), np.floor(tri.max(axis=1)).astype(int)
    size = np.maximum(hi - lo + 1, 0)
    mask = np.zeros((h, w), bool)
    order = np.argsort(size.prod(axis=1))
    for chunk in np.array_split(order, max(1, len(order) // 1024)):
        sw, sh = size[chunk].max(axis=0)
        if sw == 0 or sh == 0:
            continue
        gy, gx = np.meshgrid(np.arange(sh), np.arange(sw), indexing="ij")
        px = lo[chunk, 0, None, None] + gx  # (C, sh, sw)
        py = lo[chunk, 1, None, None] + gy
        t = tri[chunk][:, :, None, None, :]  # (C, 3, 1, 1, 2)
        edges = []
        for a, b in ((0, 1), (1, 2), (2, 0)):
            ax, ay, bx, by = t[:, a, ..., 0], t[:, a, ..., 1], t[:, b, ..., 0], t[:, b, ..., 1]
            edges.append((bx - ax) * (py - ay) - (by - ay) * (px - ax))
        e = np.stack(edges)
        inside = (np.all(e >= 0, axis=0) | np.all(e <= 0, axis=0)) & (px <= hi[chunk, 0, None, None]) & \
            (py <= hi[chunk, 1, None, None]) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
        mask[py[inside], px[inside]] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def renderer():
    if not render.is_available():
        pytest.skip("no EGL/OpenGL context")
    with MeshRenderer(W, H) as r:
        yield r


@pytest.fixture(scope="module")
def smplx_mesh(body_model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The stand-in SMPL-X template turned upright in the OpenCV camera frame, 2.5 m in front of the camera."""
    data = np.load(body_model_dir / "smplx" / "SMPLX_NEUTRAL.npz", allow_pickle=True)
    v = data["v_template"].astype(np.float64) * np.array([1.0, -1.0, -1.0]) + np.array([0.1, 0.15, 2.5])
    return v.astype(np.float32), data["f"].astype(np.int64)


@needs_gl
def test_rectangle_silhouette_depth_and_shading(renderer: MeshRenderer) -> None:
    v = rect(-0.2, -0.1, 0.3, 0.25, 2.0)
    rgb, mask, depth = renderer.render([v], SQUARE_FACES, FOCAL, PRINCPT, colors=[(0.2, 0.6, 1.0)])
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.float32 and mask.dtype == bool and depth.shape == (H, W)
    # pixel (u, v) is covered iff its centre lies inside the projected rectangle
    (u1, v1), (u2, v2) = project(v[[0, 2]].astype(np.float64))
    uu, vv = np.meshgrid(np.arange(W), np.arange(H))
    expected = (uu > u1) & (uu < u2) & (vv > v1) & (vv < v2)
    border = (np.abs(uu - u1) < 0.5) | (np.abs(uu - u2) < 0.5) | (np.abs(vv - v1) < 0.5) | (np.abs(vv - v2) < 0.5)
    assert np.array_equal(mask & ~border, expected & ~border)
    assert iou(mask, reference_mask(v, SQUARE_FACES)) > 0.99
    np.testing.assert_allclose(depth[mask], 2.0, atol=1e-5)
    assert np.all(depth[~mask] == 0) and np.all(rgb[~mask] == 0)
    light = np.asarray(LIGHT_DIR) / np.linalg.norm(LIGHT_DIR)
    shade = AMBIENT + DIFFUSE * max(float(light @ np.array([0.0, 0.0, -1.0])), 0.0)  # normal faces the camera
    np.testing.assert_allclose(rgb[mask], np.tile(np.array([0.2, 0.6, 1.0]) * shade, (mask.sum(), 1)), atol=1 / 255)


@needs_gl
def test_tilted_plane_depth(renderer: MeshRenderer) -> None:
    """Depth is camera z: on a plane z = 2 + 0.5 x it must follow the plane at every pixel centre."""
    xs, ys = (-0.4, 0.4), (-0.3, 0.3)
    v = np.array([[x, y, 2.0 + 0.5 * x] for x, y in [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]),
                                                     (xs[0], ys[1])]], np.float32)
    _, mask, depth = renderer.render([v], SQUARE_FACES, FOCAL, PRINCPT)
    uu, _ = np.meshgrid(np.arange(W), np.arange(H))
    a = (uu - PRINCPT[0]) / FOCAL[0]  # ray x / z at each pixel centre; z = 2 + 0.5 a z
    np.testing.assert_allclose(depth[mask], (2.0 / (1.0 - 0.5 * a))[mask], rtol=1e-4)


@needs_gl
def test_image_is_not_flipped(renderer: MeshRenderer) -> None:
    cases = {(0.3, 0.0): (1, 0), (-0.3, 0.0): (-1, 0), (0.0, 0.2): (0, 1), (0.0, -0.2): (0, -1)}
    for (x, y), (sx, sy) in cases.items():
        v = rect(x - 0.03, y - 0.03, x + 0.03, y + 0.03, 2.0)
        _, mask, _ = renderer.render([v], SQUARE_FACES, FOCAL, PRINCPT)
        rows, cols = np.nonzero(mask)
        u, w = project(np.array([[x, y, 2.0]]))[0]
        assert cols.mean() == pytest.approx(u, abs=0.6) and rows.mean() == pytest.approx(w, abs=0.6)
        # +x right of the principal point, +y below it
        assert np.sign(round(cols.mean() - PRINCPT[0])) == sx and np.sign(round(rows.mean() - PRINCPT[1])) == sy


@needs_gl
def test_smplx_silhouette_matches_projection(renderer: MeshRenderer, smplx_mesh) -> None:
    v, f = smplx_mesh
    rgb, mask, depth = renderer.render([v], f, FOCAL, PRINCPT)
    ref = reference_mask(v, f)
    assert ref.sum() > 2000
    assert iou(mask, ref) > 0.99  # measured 0.9995: only pixel centres exactly on edges differ
    assert depth[mask].min() >= v[:, 2].min() - 1e-4 and depth[mask].max() <= v[:, 2].max() + 1e-4


@needs_gl
def test_depth_ordering_of_two_meshes(renderer: MeshRenderer) -> None:
    near = rect(-0.3, -0.2, 0.1, 0.2, 2.0)
    far = rect(-0.1, -0.1, 0.4, 0.3, 3.0)
    red, green = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    for order in ((near, far, red, green), (far, near, green, red)):
        rgb, mask, depth = renderer.render(list(order[:2]), SQUARE_FACES, FOCAL, PRINCPT, colors=list(order[2:]))
        both = reference_mask(near, SQUARE_FACES) & reference_mask(far, SQUARE_FACES)
        only_far = reference_mask(far, SQUARE_FACES) & ~reference_mask(near, SQUARE_FACES)
        inner = cv2.erode(both.astype(np.uint8), np.ones((3, 3))).astype(bool)
        assert inner.sum() > 100
        assert np.all(rgb[inner, 0] > 0.5) and np.all(rgb[inner, 1] == 0)  # the near (red) one wins
        np.testing.assert_allclose(depth[inner], 2.0, atol=1e-5)
        inner_far = cv2.erode(only_far.astype(np.uint8), np.ones((3, 3))).astype(bool)
        assert np.all(rgb[inner_far, 1] > 0.5) and np.all(rgb[inner_far, 0] == 0)
        np.testing.assert_allclose(depth[inner_far], 3.0, atol=1e-5)


@needs_gl
def test_empty_scene_and_bad_input(renderer: MeshRenderer) -> None:
    rgb, mask, depth = renderer.render([], SQUARE_FACES, FOCAL, PRINCPT)
    assert not mask.any() and not rgb.any() and not depth.any()
    with pytest.raises(ValueError, match="colours"):
        renderer.render([rect(0, 0, 1, 1, 2)], SQUARE_FACES, FOCAL, PRINCPT, colors=[(1, 0, 0), (0, 1, 0)])
    with pytest.raises(ValueError, match="faces index"):
        renderer.render([rect(0, 0, 1, 1, 2)[:3]], SQUARE_FACES, FOCAL, PRINCPT)


def test_overlay_compositing() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rendering = rng.random((H, W, 3), dtype=np.float32)
    mask = np.zeros((H, W), bool)
    mask[50:120, 30:200] = True
    out = overlay(frame, rendering, mask)  # opacity 1: covered pixels replaced
    np.testing.assert_array_equal(out[~mask], frame[~mask])
    np.testing.assert_array_equal(out[mask], np.rint(rendering[mask] * 255).astype(np.uint8))
    half = overlay(frame, rendering, mask, opacity=0.5)
    expected = frame[mask] * 0.5 + rendering[mask] * 255 * 0.5
    assert np.abs(half[mask].astype(float) - expected).max() <= 1.0
    np.testing.assert_array_equal(half[~mask], frame[~mask])
    soft = np.clip(rng.random((H, W)).astype(np.float32) - 0.3, 0, 1)  # float alpha, zero on ~30% of pixels
    out = overlay(frame, rendering, soft, opacity=0.8)
    a = (soft * 0.8)[:, :, None]
    expected = np.rint(frame * (1 - a) + rendering * 255 * a)
    assert np.abs(out.astype(float) - expected).max() <= 1.0
    assert out.dtype == np.uint8 and frame is not out


def test_draw_vertices_and_boxes() -> None:
    image = np.full((H, W, 3), 200, np.uint8)
    pts = np.array([[0.1, 0.05, 2.0], [-0.2, -0.1, 2.5], [0.0, 0.0, -1.0]])  # the last one is behind the camera
    out = draw_vertices(image, pts, FOCAL, PRINCPT)
    assert np.all(image == 200)  # input untouched
    changed = np.any(out != 200, axis=2)
    for u, v in project(pts[:2]).astype(np.int32):
        assert changed[v, u] and out[v, u, 2] > out[v, u, 0]  # a blue dot on the vertex
    assert changed.sum() < 2 * 30  # two dots of radius 2 and nothing for the point behind
    # alpha 0.8 over blue (0, 0, 255): centre = 0.2 * 200 + 0.8 * colour
    u, v = project(pts[:1]).astype(np.int32)[0]
    np.testing.assert_allclose(out[v, u].astype(float), [40, 40, 244], atol=1)

    boxed = draw_boxes(image, np.array([[10.4, 20.9, 100.2, 150.0]]), labels=["7"])
    assert tuple(boxed[20, 50]) == (255, 0, 0) and tuple(boxed[80, 10]) == (255, 0, 0)  # edges, truncated corners
    assert tuple(boxed[80, 50]) == (200, 200, 200)  # inside untouched


def test_unavailable_renderer_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moderngl", None)  # "not installed"
    render.is_available.cache_clear()
    try:
        assert not render.is_available()
        with pytest.raises(RendererUnavailable, match="apt-get install libegl1"):
            MeshRenderer(64, 48)
    finally:
        render.is_available.cache_clear()


def test_context_creation_failure_message(monkeypatch: pytest.MonkeyPatch) -> None:
    moderngl = pytest.importorskip("moderngl")

    def fail(**kwargs):
        raise Exception("libEGL.so: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_standalone_context", fail)
    with pytest.raises(RendererUnavailable, match="libEGL.so.*pip install moderngl") as info:
        MeshRenderer(64, 48)
    assert isinstance(info.value, RuntimeError)


@needs_gl
def test_torch_compiler_stack_imports_after_rendering() -> None:
    """Mesa's llvmpipe and triton both carry LLVM: importing triton (via torch._dynamo) after a context was made
    used to segfault. Run in a fresh process so the order is really 'render first'."""
    import subprocess

    code = ("import numpy as np\n"
            "from common.utils.render import MeshRenderer\n"
            "r = MeshRenderer(32, 24)\n"
            "v = np.array([[-0.1, -0.1, 1], [0.1, -0.1, 1], [0, 0.1, 1]], np.float32)\n"
            "assert r.render([v], np.array([[0, 1, 2]]), (50, 50), (16, 12))[1].any()\n"
            "import torch._dynamo\n"
            "print('ok')\n")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_track_colors_are_distinct_and_stable() -> None:
    colors = [render.track_color(i) for i in range(8)]
    assert colors == [render.track_color(i) for i in range(8)]
    assert all(0.0 <= c <= 1.0 for rgb in colors for c in rgb)
    c = np.array(colors)
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    assert d[~np.eye(8, dtype=bool)].min() > 0.05
