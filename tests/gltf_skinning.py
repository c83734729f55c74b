"""An independent glTF 2.0 player for the export tests and bench: reads a .glb with pygltflib and evaluates, in
numpy, the node hierarchy, the animation samplers (STEP / LINEAR: lerp, shortest-path slerp), morph targets and
linear-blend skinning at a given time, straight from the glTF specification (it shares no code with
common/export). Positions come out in the file's scene frame (glTF: y up), metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_COMPS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class GltfPlayer:
    def __init__(self, path: str | Path) -> None:
        import pygltflib

        self.doc = pygltflib.GLTF2.load(str(path))
        self.blob = self.doc.binary_blob()
        self.parent = {c: i for i, n in enumerate(self.doc.nodes) for c in (n.children or [])}

    def read(self, index: int) -> np.ndarray:
        """Accessor ``index`` as (count, components) float64 (MAT4: (count, 4, 4) row-major)."""
        acc = self.doc.accessors[index]
        view = self.doc.bufferViews[acc.bufferView]
        comps = _COMPS[acc.type]
        dtype = np.dtype(_DTYPES[acc.componentType])
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        stride = view.byteStride or dtype.itemsize * comps
        raw = np.frombuffer(self.blob, np.uint8, count=stride * (acc.count - 1) + dtype.itemsize * comps,
                            offset=start)
        rows = np.stack([raw[i * stride:i * stride + dtype.itemsize * comps].view(dtype) for i in range(acc.count)]) \
            if stride != dtype.itemsize * comps else raw.view(dtype).reshape(acc.count, comps)
        out = rows.astype(np.float64)
        if comps == 16:
            out = out.reshape(-1, 4, 4).transpose(0, 2, 1)  # stored column-major
        return out

    def node_index(self, name: str) -> int:
        hits = [i for i, n in enumerate(self.doc.nodes) if n.name == name]
        assert len(hits) == 1, f"{len(hits)} nodes named {name!r}"
        return hits[0]

    # ------------------------------------------------------------------------------------------ animation
    def _sample(self, sampler, t: float) -> np.ndarray:
        times = self.read(sampler.input)[:, 0]
        values = self.read(sampler.output)
        values = values.reshape(len(times), -1)
        if t <= times[0]:
            return values[0]
        if t >= times[-1]:
            return values[-1]
        i = int(np.searchsorted(times, t, side="right") - 1)
        if sampler.interpolation == "STEP":
            return values[i]
        assert sampler.interpolation in (None, "LINEAR"), sampler.interpolation
        s = (t - times[i]) / (times[i + 1] - times[i])
        a, b = values[i], values[i + 1]
        return (1 - s) * a + s * b

    def _sample_rotation(self, sampler, t: float) -> np.ndarray:
        times = self.read(sampler.input)[:, 0]
        q = self.read(sampler.output)
        if t <= times[0] or t >= times[-1] or sampler.interpolation == "STEP":
            return self._sample(sampler, t)
        i = int(np.searchsorted(times, t, side="right") - 1)
        s = (t - times[i]) / (times[i + 1] - times[i])
        a, b = q[i], q[i + 1]
        if a @ b < 0:
            b = -b
        ang = np.arccos(np.clip(a @ b, -1.0, 1.0))
        if ang < 1e-9:
            return a
        return (np.sin((1 - s) * ang) * a + np.sin(s * ang) * b) / np.sin(ang)

    def pose(self, t: float, animation: int = 0) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
        """Local TRS of every node at time ``t`` and morph weights per animated node."""
        trs = []
        for n in self.doc.nodes:
            assert n.matrix is None, "matrix nodes not used by the exporter"
            trs.append({"translation": np.array(n.translation or [0, 0, 0], float),
                        "rotation": np.array(n.rotation or [0, 0, 0, 1], float),
                        "scale": np.array(n.scale or [1, 1, 1], float)})
        weights: dict[int, np.ndarray] = {}
        if self.doc.animations:
            anim = self.doc.animations[animation]
            for ch in anim.channels:
                sampler = anim.samplers[ch.sampler]
                if ch.target.path == "rotation":
                    trs[ch.target.node]["rotation"] = self._sample_rotation(sampler, t)
                elif ch.target.path == "weights":
                    weights[ch.target.node] = self._sample(sampler, t)
                else:
                    trs[ch.target.node][ch.target.path] = self._sample(sampler, t)
        return trs, weights

    def world_matrices(self, t: float = 0.0) -> list[np.ndarray]:
        trs, _ = self.pose(t)
        local = [_trs_matrix(**p) for p in trs]
        world: dict[int, np.ndarray] = {}

        def get(i: int) -> np.ndarray:
            if i not in world:
                world[i] = local[i] if i not in self.parent else get(self.parent[i]) @ local[i]
            return world[i]

        return [get(i) for i in range(len(self.doc.nodes))]

    # ------------------------------------------------------------------------------------------ meshes
    def mesh_vertices(self, node_name: str, t: float = 0.0) -> np.ndarray:
        """(V, 3) scene-frame positions of the mesh on node ``node_name`` at time ``t`` (morphs, then skinning)."""
        i = self.node_index(node_name)
        node = self.doc.nodes[i]
        mesh = self.doc.meshes[node.mesh]
        prim = mesh.primitives[0]
        pos = self.read(prim.attributes.POSITION)
        _, anim_weights = self.pose(t)
        w = anim_weights.get(i, np.asarray(mesh.weights or [0.0] * len(prim.targets or []), float))
        for k, target in enumerate(prim.targets or []):
            pos = pos + w[k] * self.read(target["POSITION"] if isinstance(target, dict) else target.POSITION)
        world = self.world_matrices(t)
        if node.skin is None:
            return (world[i][:3, :3] @ pos.T).T + world[i][:3, 3]
        skin = self.doc.skins[node.skin]
        ibm = self.read(skin.inverseBindMatrices)
        joint_mats = np.stack([world[j] for j in skin.joints]) @ ibm
        out = np.zeros_like(pos)
        homo = np.concatenate([pos, np.ones((len(pos), 1))], axis=1)
        k = 0
        while getattr(prim.attributes, f"JOINTS_{k}", None) is not None:
            jid = self.read(getattr(prim.attributes, f"JOINTS_{k}")).astype(np.int64)
            wt = self.read(getattr(prim.attributes, f"WEIGHTS_{k}"))
            for c in range(4):
                out += wt[:, c:c + 1] * np.einsum("vij,vj->vi", joint_mats[jid[:, c]], homo)[:, :3]
            k += 1
        return out


def _trs_matrix(translation: np.ndarray, rotation: np.ndarray, scale: np.ndarray) -> np.ndarray:
    x, y, z, w = rotation / np.linalg.norm(rotation)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * scale[None, :]
    m[:3, 3] = translation
    return m
