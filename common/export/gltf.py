"""glTF 2.0 binary (.glb) writing with pygltflib, and the static per-frame scene.

Frames. Inputs are in the OpenCV camera frame (x right, y down, z forward, metres). glTF is y-up with a camera
looking down its local -z, so every exported scene stores the camera-frame point (x, y, z) as (x, -y, -z): a
180 degree rotation about x (:data:`CV_TO_GLTF`, its own inverse). The scene camera is a glTF perspective camera on
a node at the origin with no rotation, ``yfov = 2 atan(H / (2 F))`` and ``aspectRatio = W / H``: looking through
it reproduces the video frame (principal point at the image centre, square pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.export.tracks import SceneCamera
from common.utils.io import atomic_open

CV_TO_GLTF = np.diag([1.0, -1.0, -1.0])  # OpenCV camera frame -> glTF scene frame (and back: it is an involution)
GENERATOR = "SMPLer-X common.export"
CAMERA_ZNEAR = 0.01  # m: near plane of the exported camera (zfar omitted: an infinite projection)
# (r, g, b, a) linear base colours cycled over the people / tracks of a file
PALETTE = ((0.85, 0.55, 0.45, 1.0), (0.45, 0.6, 0.85, 1.0), (0.55, 0.8, 0.5, 1.0), (0.85, 0.75, 0.4, 1.0),
           (0.7, 0.5, 0.8, 1.0), (0.45, 0.8, 0.8, 1.0))
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def opencv_to_gltf(points: np.ndarray) -> np.ndarray:
    """(..., 3) OpenCV camera-frame points -> glTF scene frame (x, -y, -z); applied twice it is the identity."""
    return np.asarray(points) * np.array([1.0, -1.0, -1.0], dtype=np.asarray(points).dtype)


class GlbBuilder:
    """Collects one binary buffer and a pygltflib document; :meth:`write` saves the .glb atomically."""

    def __init__(self) -> None:
        import pygltflib as g  # deferred: only the exporters need it

        self.g = g
        self.doc = g.GLTF2(asset=g.Asset(generator=GENERATOR, version="2.0"))
        self._blob = bytearray()

    def view(self, data: bytes, target: int | None = None) -> int:
        """Append ``data`` (4-byte aligned) as a buffer view; ``target``: ARRAY_BUFFER / ELEMENT_ARRAY_BUFFER for
        vertex / index data, None for animation and inverse-bind data. Returns the view index."""
        self._blob += b"\0" * (-len(self._blob) % 4)
        self.doc.bufferViews.append(self.g.BufferView(buffer=0, byteOffset=len(self._blob), byteLength=len(data),
                                                      target=target))
        self._blob += data
        return len(self.doc.bufferViews) - 1

    def accessor(self, array: np.ndarray, *, target: int | None = None, bounds: bool = False) -> int:
        """Store ``array`` (N, C) or (N,) as an accessor (float32 -> FLOAT, uint8 / uint16 / uint32 -> UNSIGNED_*;
        C = 16 is MAT4, given row-major per item and written column-major). ``bounds`` adds min / max (required for
        positions and animation inputs). Returns the accessor index."""
        a = np.asarray(array)
        comps = 1 if a.ndim == 1 else a.shape[1]
        if comps == 16:
            a = a.reshape(-1, 4, 4).transpose(0, 2, 1).reshape(-1, 16)  # glTF matrices are column-major
        ctype = {np.dtype(np.float32): self.g.FLOAT, np.dtype(np.uint8): self.g.UNSIGNED_BYTE,
                 np.dtype(np.uint16): self.g.UNSIGNED_SHORT, np.dtype(np.uint32): self.g.UNSIGNED_INT}[a.dtype]
        a = np.ascontiguousarray(a)
        acc = self.g.Accessor(bufferView=self.view(a.tobytes(), target), componentType=ctype, count=len(a),
                              type=_TYPES[comps])
        if bounds:
            flat = a.reshape(len(a), -1)
            acc.min = [float(x) if a.dtype == np.float32 else int(x) for x in flat.min(0)]
            acc.max = [float(x) if a.dtype == np.float32 else int(x) for x in flat.max(0)]
        self.doc.accessors.append(acc)
        return len(self.doc.accessors) - 1

    def node(self, **fields) -> int:
        """Add a node (pygltflib ``Node`` fields); returns its index."""
        self.doc.nodes.append(self.g.Node(**fields))
        return len(self.doc.nodes) - 1

    def material(self, index: int) -> int:
        """A matte material in the palette colour ``index`` (cycled); returns its index."""
        colour = list(PALETTE[index % len(PALETTE)])
        self.doc.materials.append(self.g.Material(
            name=f"body_{index}", pbrMetallicRoughness=self.g.PbrMetallicRoughness(
                baseColorFactor=colour, metallicFactor=0.0, roughnessFactor=0.8)))
        return len(self.doc.materials) - 1

    def camera_node(self, camera: SceneCamera) -> int:
        """The scene camera (see the module docstring) on a node at the origin named ``camera``."""
        self.doc.cameras.append(self.g.Camera(type="perspective", name="scene_camera", perspective=self.g.Perspective(
            yfov=camera.yfov, aspectRatio=camera.aspect_ratio, znear=CAMERA_ZNEAR)))
        return self.node(name="camera", camera=len(self.doc.cameras) - 1)

    def to_bytes(self, scene_nodes: Sequence[int]) -> bytes:
        """The .glb bytes with one scene holding ``scene_nodes``."""
        self.doc.scenes = [self.g.Scene(nodes=list(scene_nodes))]
        self.doc.scene = 0
        self.doc.buffers = [self.g.Buffer(byteLength=len(self._blob))]
        self.doc.set_binary_blob(bytes(self._blob))
        return b"".join(self.doc.save_to_bytes())

    def write(self, path: str | Path, scene_nodes: Sequence[int]) -> Path:
        data = self.to_bytes(scene_nodes)
        with atomic_open(path, "wb") as f:
            f.write(data)
        return Path(path)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit area-weighted vertex normals (counter-clockwise faces = outward); (0, 1, 0) for vertices
    on no face of non-zero area."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-300), (0.0, 1.0, 0.0))
    return n.astype(np.float32)


def check_faces(faces: np.ndarray, vertex_num: int) -> np.ndarray:
    """(F, 3) uint32 faces, checked against ``vertex_num``; raises InputError otherwise."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= vertex_num:
        raise InputError(f"faces must be a non-empty (F, 3) array of 0-based indices below {vertex_num}, got shape "
                         f"{f.shape}; pass the body model's faces (SMPLXLayer.faces)")
    return f.astype(np.uint32)


def static_glb(path: str | Path, people: Sequence[tuple[str, np.ndarray]], faces: np.ndarray,
               camera: SceneCamera | None = None) -> Path:
    """Write one frame's people as a .glb: a mesh node per ``(name, vertices (V, 3))`` (OpenCV camera frame, metres;
    stored as (x, -y, -z), see the module docstring) sharing ``faces`` (F, 3) 0-based, with smooth vertex normals and
    one colour per person, plus the scene camera when ``camera`` is given. Returns ``path``."""
    if not people:
        raise InputError("static_glb needs at least one person; skip frames with nobody")
    b = GlbBuilder()
    verts = []
    for name, v in people:
        v = np.asarray(v, np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
            raise InputError(f"person {name!r}: vertices must be a finite (V, 3) array, got shape {v.shape}")
        verts.append(v)
    f = check_faces(faces, min(len(v) for v in verts))
    indices = b.accessor(f.reshape(-1), target=b.g.ELEMENT_ARRAY_BUFFER)
    nodes = []
    for k, ((name, _), v) in enumerate(zip(people, verts)):
        gl = opencv_to_gltf(v)
        attrs = b.g.Attributes(POSITION=b.accessor(gl.astype(np.float32), target=b.g.ARRAY_BUFFER, bounds=True),
                               NORMAL=b.accessor(vertex_normals(gl, f), target=b.g.ARRAY_BUFFER))
        b.doc.meshes.append(b.g.Mesh(name=str(name), primitives=[b.g.Primitive(
            attributes=attrs, indices=indices, mode=b.g.TRIANGLES, material=b.material(k))]))
        nodes.append(b.node(name=str(name), mesh=len(b.doc.meshes) - 1))
    if camera is not None:
        nodes.append(b.camera_node(camera))
    return b.write(path, nodes)
