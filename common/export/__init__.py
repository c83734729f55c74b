"""Exporters of tracked SMPL-X motion: per-frame glTF scenes, one animated glTF per clip, BVH per person.

Frames and units are stated in each module: inputs are in the OpenCV scene camera frame (x right, y down, z forward,
metres); the files are y-up (glTF: (x, -y, -z) of the camera frame; BVH the same axes, centimetres). See
docs/exports.md for the formats, what is approximated and how to import the files. Importing this package loads
neither torch nor pygltflib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.export.animation import write_animated_glb
    from common.export.bvh import write_bvh
    from common.export.gltf import static_glb
    from common.export.tracks import SceneCamera, TrackMotion, tracks_from_stacked

_EXPORTS = {
    "SceneCamera": "common.export.tracks",
    "TrackMotion": "common.export.tracks",
    "tracks_from_stacked": "common.export.tracks",
    "static_glb": "common.export.gltf",
    "write_animated_glb": "common.export.animation",
    "write_bvh": "common.export.bvh",
}
__all__ = ["SceneCamera", "TrackMotion", "tracks_from_stacked", "static_glb", "write_animated_glb", "write_bvh"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
