"""Headless mesh rendering (moderngl on EGL) and the 2-D overlays of the original demo.

:class:`MeshRenderer` draws triangle meshes given in the **OpenCV camera frame** (metres; x right, y down, z forward
from the camera) with pinhole intrinsics in pixels (``focal`` (fx, fy), ``princpt`` (cx, cy); pixel centres at
integer coordinates, so a point projects to pixel ``round(fx * x / z + cx), round(fy * y / z + cy)`` exactly as
:func:`common.engine.predictor.project`). The projection maps OpenCV pixels straight to OpenGL clip space, rows
top-down, so no axis is flipped anywhere and the read-back image needs no vertical flip. Several meshes share one
depth buffer (nearest surface wins).

Shading: flat faces (like the original's ``smooth=False``), normals from screen-space derivatives turned toward the
camera (two-sided, independent of face winding), Lambert with one directional light from above the camera plus
ambient.

Rendering needs ``moderngl`` (``pip install moderngl==5.13.0``) and an EGL driver: on Debian/Ubuntu
``apt-get install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri`` (Mesa's llvmpipe renders on the CPU; a GPU driver's
EGL is used when present). :func:`is_available` lets callers skip rendering and still write every parameter file;
:class:`MeshRenderer` raises :class:`RendererUnavailable` with these instructions when no context can be made.
A renderer (its OpenGL context) belongs to the thread that created it.

The vertex-dot and box helpers reproduce the original's ``--show_verts`` (every vertex a dot of radius 2, blended at
0.8, blue) and ``--show_bbox`` (the detector box in red, 2 px).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.errors import UserError

INSTALL_HINT = ("install moderngl (pip install moderngl==5.13.0) and an EGL driver (Debian/Ubuntu: apt-get install "
                "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri), or render without meshes (vertex dots only)")
DEFAULT_COLOR = (1.0, 1.0, 0.9)  # the original demo's mesh colour (RGB in [0, 1])
AMBIENT = 0.3  # ambient light level, as the original's scene
DIFFUSE = 0.7  # strength of the directional light
LIGHT_DIR = (0.0, -0.5, -1.0)  # direction *towards* the light, camera frame: from above (-y) and behind the camera
NEAR, FAR = 0.01, 1000.0  # clipping planes (m)

_VERTEX_SHADER = """
#version 330
uniform mat4 proj;
in vec3 in_pos;
out vec3 v_cam;
void main() {
    v_cam = in_pos;
    gl_Position = proj * vec4(in_pos, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 color;
uniform vec3 light_dir;
uniform float ambient;
uniform float diffuse;
in vec3 v_cam;
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_depth;
void main() {
    vec3 n = normalize(cross(dFdx(v_cam), dFdy(v_cam)));
    if (dot(n, v_cam) > 0.0) n = -n;  // face the camera (the eye is at the origin)
    float lambert = max(dot(n, light_dir), 0.0);
    f_color = vec4(color * (ambient + diffuse * lambert), 1.0);
    f_depth = v_cam.z;
}
"""


class RendererUnavailable(UserError, RuntimeError):
    """No headless OpenGL context can be created (moderngl or the EGL libraries are missing)."""


def _preload_triton() -> None:
    """Load triton's LLVM before Mesa's.

    Mesa's llvmpipe (the CPU driver) loads its own LLVM into the process; importing triton afterwards (torch pulls it
    in lazily, e.g. with ``torch._dynamo``) then segfaults, as triton's LLVM symbols get bound to Mesa's. In the
    other order both coexist, so triton's native module is imported first when it is installed (~0.2 s, once).
    """
    if importlib.util.find_spec("triton") is None:
        return
    try:
        importlib.import_module("triton._C.libtriton")
    except Exception:  # noqa: BLE001 - a broken triton is torch's concern, not the renderer's
        pass


def _create_context(device_index: int = 0) -> Any:
    _preload_triton()
    try:
        import moderngl
    except ImportError as err:
        raise RendererUnavailable(f"mesh rendering needs moderngl, which is not installed; {INSTALL_HINT}") from err
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330, device_index=device_index)
    except Exception as err:  # noqa: BLE001 - glcontext raises plain Exceptions for missing libraries/drivers
        raise RendererUnavailable(f"cannot create a headless OpenGL 3.3 context with EGL ({err}); {INSTALL_HINT}"
                                  ) from err
    return ctx


@functools.cache
def is_available(device_index: int = 0) -> bool:
    """True if a :class:`MeshRenderer` can be created here (the check is made once and remembered)."""
    try:
        _create_context(device_index).release()
    except RendererUnavailable:
        return False
    return True


def opencv_projection(focal: Sequence[float], princpt: Sequence[float], width: int, height: int,
                      near: float = NEAR, far: float = FAR) -> np.ndarray:
    """4x4 projection (float32, row-major) from OpenCV intrinsics to OpenGL clip space for a top-down image.

    A camera point (x, y, z) lands at NDC ``x_ndc = 2 (fx x / z + cx + 0.5) / W - 1`` (pixel i's centre, at OpenCV
    coordinate i, is at window coordinate i + 0.5) and likewise ``y_ndc`` with (fy, cy, H) **without** flipping:
    framebuffer row r is image row r. Depth is the usual perspective mapping of z in [near, far] to [-1, 1].
    """
    fx, fy = (float(v) for v in focal)
    cx, cy = (float(v) for v in princpt)
    p = np.zeros((4, 4), dtype=np.float64)
    p[0, 0] = 2.0 * fx / width
    p[0, 2] = 2.0 * (cx + 0.5) / width - 1.0
    p[1, 1] = 2.0 * fy / height
    p[1, 2] = 2.0 * (cy + 0.5) / height - 1.0
    p[2, 2] = (far + near) / (far - near)
    p[2, 3] = -2.0 * far * near / (far - near)
    p[3, 2] = 1.0
    return p.astype(np.float32)


class MeshRenderer:
    """Offscreen renderer of ``width`` x ``height`` px images; reuse one instance for every frame of a video.

    ``device_index`` picks the EGL device (GPU) when several exist. Raises :class:`RendererUnavailable` when no
    context can be created (see the module docstring for what to install).
    """

    def __init__(self, width: int, height: int, device_index: int = 0):
        if width <= 0 or height <= 0:
            raise ValueError(f"render size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.ctx = _create_context(device_index)
        ctx = self.ctx
        self.prog = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self.fbo = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer((self.width, self.height), 4, dtype="f1"),
                               ctx.renderbuffer((self.width, self.height), 1, dtype="f4")],
            depth_attachment=ctx.depth_renderbuffer((self.width, self.height)))
        light = np.asarray(LIGHT_DIR, dtype=np.float64)
        self.prog["light_dir"].value = tuple(light / np.linalg.norm(light))
        self.prog["ambient"].value = AMBIENT
        self.prog["diffuse"].value = DIFFUSE
        self._buffers: dict[str, Any] = {}
        self._faces_key: tuple | None = None

    def _buffer(self, name: str, data: np.ndarray) -> Any:
        """Reuse a GPU buffer when big enough, else make a new one; upload ``data``."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < data.nbytes:
            if buf is not None:
                buf.release()
            buf = self.ctx.buffer(reserve=max(data.nbytes, 4))
            self._buffers[name] = buf
        buf.write(data)
        return buf

    def render(self, vertices_list: Sequence[np.ndarray], faces: np.ndarray, focal: Sequence[float],
               princpt: Sequence[float], colors: Sequence[Sequence[float]] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render meshes sharing ``faces`` into one image.

        Args:
            vertices_list: one (V, 3) array per person, metres, OpenCV camera frame.
            faces: (F, 3) vertex indices (0-based), the same for every mesh.
            focal, princpt: (fx, fy), (cx, cy) in px of this renderer's image.
            colors: one RGB in [0, 1] per mesh (default :data:`DEFAULT_COLOR`).

        Returns:
            rgb float32 (H, W, 3) in [0, 1] (0 where nothing was drawn), mask bool (H, W) (a mesh covers the pixel
            centre), depth float32 (H, W): camera z in metres of the nearest surface, 0 where empty.
        """
        if colors is not None and len(colors) != len(vertices_list):
            raise ValueError(f"{len(colors)} colours for {len(vertices_list)} meshes")
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {faces.shape}")
        ctx = self.ctx
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(ctx.DEPTH_TEST)
        ctx.disable(ctx.CULL_FACE)
        if vertices_list:
            proj = opencv_projection(focal, princpt, self.width, self.height)
            self.prog["proj"].write(proj.T.copy().tobytes())  # GLSL matrices are column-major
            key = (faces.shape, faces.dtype.str, hash(faces.tobytes()))
            ibo = self._buffers.get("faces")
            if key != self._faces_key or ibo is None:
                ibo = self._buffer("faces", np.ascontiguousarray(faces, dtype=np.int32))
                self._faces_key = key
            for i, verts in enumerate(vertices_list):
                verts = np.ascontiguousarray(verts, dtype=np.float32)
                if verts.ndim != 2 or verts.shape[1] != 3:
                    raise ValueError(f"vertices must be (V, 3), got {verts.shape}")
                if faces.size and int(faces.max()) >= len(verts):
                    raise ValueError(f"faces index vertex {int(faces.max())} but the mesh has {len(verts)}")
                vbo = self._buffer(f"verts{i}", verts)
                vao = ctx.vertex_array(self.prog, [(vbo, "3f", "in_pos")], index_buffer=ibo, index_element_size=4)
                self.prog["color"].value = tuple(float(c) for c in (colors[i] if colors else DEFAULT_COLOR))
                vao.render(vertices=faces.size)
                vao.release()
        h, w = self.height, self.width
        depth = np.empty((h, w), np.float32)
        self.fbo.read_into(depth, components=1, attachment=1, dtype="f4")
        rgb8 = np.empty((h, w, 3), np.uint8)
        self.fbo.read_into(rgb8, components=3, attachment=0, dtype="f1")
        rgb = np.multiply(rgb8, np.float32(1.0 / 255.0), dtype=np.float32)
        return rgb, depth > 0, depth

    def release(self) -> None:
        """Free the OpenGL context and its buffers."""
        for buf in self._buffers.values():
            buf.release()
        self._buffers.clear()
        self.ctx.release()

    def __enter__(self) -> MeshRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def track_color(track_id: int) -> tuple[float, float, float]:
    """A distinct, stable mesh colour (RGB in [0, 1]) per person / track id: hues spaced by the golden ratio."""
    import colorsys

    return colorsys.hsv_to_rgb((0.12 + 0.618034 * int(track_id)) % 1.0, 0.45, 1.0)


def overlay(frame_rgb: np.ndarray, rendering: np.ndarray, alpha_mask: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Composite a rendering over a frame: ``out = frame (1 - a) + 255 rendering a`` with ``a = mask * opacity``.

    ``frame_rgb`` uint8 (H, W, 3); ``rendering`` float (H, W, 3) in [0, 1]; ``alpha_mask`` bool or float (H, W) in
    [0, 1]. ``opacity`` 1 replaces covered pixels, as the original. Returns a new uint8 (H, W, 3) image (rounded);
    only covered pixels are computed, so the cost follows the people's size rather than the frame's.
    """
    if frame_rgb.shape[:2] != rendering.shape[:2] or alpha_mask.shape != frame_rgb.shape[:2]:
        raise ValueError(f"sizes differ: frame {frame_rgb.shape}, rendering {rendering.shape}, mask {alpha_mask.shape}")
    import cv2

    out = np.array(frame_rgb, dtype=np.uint8, copy=True)
    sel = alpha_mask if alpha_mask.dtype == bool else alpha_mask > 0
    rows, cols = np.flatnonzero(sel.any(axis=1)), np.flatnonzero(sel.any(axis=0))
    if rows.size == 0:
        return out
    roi = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # work in the covered rectangle only
    m, f = sel[roi], out[roi]
    if alpha_mask.dtype == bool:  # constant alpha: OpenCV's saturating uint8 arithmetic (rounds like np.rint)
        r8 = cv2.convertScaleAbs(np.ascontiguousarray(rendering[roi], dtype=np.float32), alpha=255.0)
        blended = cv2.addWeighted(f, 1.0 - float(opacity), r8, float(opacity), 0.0) if opacity < 1 else r8
    else:
        a = np.clip(alpha_mask[roi].astype(np.float32) * np.float32(opacity), 0, 1)[:, :, None]
        blended = np.clip(np.rint(f * (1.0 - a) + rendering[roi].astype(np.float32) * (255.0 * a)), 0, 255)
    patch = np.ascontiguousarray(f)
    cv2.copyTo(np.ascontiguousarray(blended, dtype=np.uint8), m.view(np.uint8), patch)  # ~20x np.copyto(where=)
    out[roi] = patch
    return out


def draw_vertices(image: np.ndarray, vertices: np.ndarray, focal: Sequence[float], princpt: Sequence[float],
                  color: tuple[int, int, int] = (0, 0, 255), radius: int = 2, alpha: float = 0.8) -> np.ndarray:
    """The original's ``--show_verts``: every vertex (V, 3) (m, camera frame) projected and drawn as a filled
    anti-aliased dot, blended with weight ``alpha``. ``image`` uint8 RGB (H, W, 3) (not modified); ``color`` RGB
    (default blue). Points at z <= 0 are skipped; pixel = coordinate truncated toward zero, as the original; vertices
    landing on the same pixel are drawn once."""
    import cv2

    v = np.asarray(vertices, dtype=np.float64)
    v = v[v[:, 2] > 1e-6]
    uv = v[:, :2] / v[:, 2:3] * np.asarray(focal, dtype=np.float64) + np.asarray(princpt, dtype=np.float64)
    h, w = image.shape[:2]
    keep = np.all(np.isfinite(uv), axis=1) & (uv[:, 0] > -radius - 1) & (uv[:, 0] < w + radius + 1) & \
        (uv[:, 1] > -radius - 1) & (uv[:, 1] < h + radius + 1)
    dots = np.ascontiguousarray(image, dtype=np.uint8).copy()
    col = tuple(int(c) for c in color)
    for x, y in np.unique(uv[keep].astype(np.int32), axis=0):  # one dot per pixel: far people cost less
        cv2.circle(dots, (int(x), int(y)), radius, col, -1, cv2.LINE_AA)
    return cv2.addWeighted(np.ascontiguousarray(image, dtype=np.uint8), 1.0 - alpha, dots, alpha, 0)


def draw_boxes(image: np.ndarray, boxes_xyxy: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
               thickness: int = 2, labels: Sequence[str] | None = None) -> np.ndarray:
    """The original's ``--show_bbox``: rectangles (N, 4) xyxy px (corners truncated to int) in ``color`` (RGB, red),
    with an optional text label (e.g. a track id) above each. Returns a new uint8 (H, W, 3) image."""
    import cv2

    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    col = tuple(int(c) for c in color)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)):
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), col, thickness)
        if labels is not None:
            cv2.putText(out, str(labels[i]), (int(x1), max(int(y1) - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, col, 2,
                        cv2.LINE_AA)
    return out
