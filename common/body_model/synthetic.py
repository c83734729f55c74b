"""Licence-free stand-in SMPL-X / SMPL body-model files, for tests and for trying the code without a licence.

The real SMPL-X and SMPL files are licence-gated. This module writes files with the **official names, keys,
dtypes and shapes**, so the real loaders (the pip ``smplx`` package and :mod:`common.body_model.smplx_model`)
are what gets exercised. They are NOT the real body model: the mesh is a mannequin of capsules, fine for
checking code paths and geometry conventions, meaningless as a human shape for real images.

Layout written under ``OUT``::

    smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz   smplx/SMPLX_to_J14.pkl   smplx/MANO_SMPLX_vertex_ids.pkl
    smplx/SMPL-X__FLAME_vertex_ids.npy      smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl  (unless smpl=False)

Geometry (rest pose): a T-pose about 1.73 m tall, metres, y up, +x the subject's left, +z the front, pelvis at
the origin, palms down. Every joint owns one closed surface built as stacked rings of vertices around a segment
(a capsule, or a "pipe": a capsule-shaped torus whose thin inner channel runs along the bone). Pipes are needed
because the official counts fix the Euler characteristic: 10475 vertices with 20908 faces means 2V - F = 42,
while a closed sphere-like part costs 4; tori cost 0, and a few triangles removed from inner channels (invisible
from outside) make up the rest. SMPL (6890 / 13776, 2V - F = 4) has exactly one capsule, the head.

The vertex ids that ``smplx`` hard-codes (nose, eyes, ears, toes, heels, finger tips) sit on the right part at
the right place; the 778 ids per hand in ``MANO_SMPLX_vertex_ids.pkl`` are the wrist and finger vertices, the
5023 ids in ``SMPL-X__FLAME_vertex_ids.npy`` the head, jaw, eye and neck vertices.

Command line: ``python -m common.body_model.synthetic OUT [--seed N] [--no-smpl] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.utils.io import atomic_open

SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# The official kintree_table stores the root's parent as uint32(-1); smplx overwrites parents[0] with -1.
ROOT_PARENT_SENTINEL = 4294967295
SMPLX_VERTEX_NUM, SMPLX_FACE_NUM = 10475, 20908
SMPL_VERTEX_NUM, SMPL_FACE_NUM = 6890, 13776
GENDER_SCALE = {"NEUTRAL": 1.0, "MALE": 1.04, "FEMALE": 0.96}  # uniform scale about the pelvis
FLAME_JOINTS = (12, 15, 22, 23, 24)  # neck, head, jaw, eyes
HAND_JOINTS = {"left": (20, *range(25, 40)), "right": (21, *range(40, 55))}
# Left joint -> right joint, for mirroring the part table (SMPL-X numbering; SMPL shares 0-21).
_MIRROR = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 23: 24, **{25 + k: 40 + k for k in range(15)}}
_INNER_RADIUS = 0.001  # radius of a pipe's inner channel (m): holes of 1 mm at the ends, invisible in renders

Vec = tuple[float, float, float]


@dataclass(frozen=True)
class _Part:
    """One joint's surface: rings around the segment start -> end (metres, rest frame)."""

    joint: int
    start: Vec
    end: Vec
    radii: tuple[float, float, float, float]  # (a0, b0, a1, b1): half-axes along e1 / e2 at start and end
    up: Vec  # e1 = component of `up` orthogonal to the segment; e2 = axis x e1
    ring: int  # vertices per ring
    count: int  # vertices of this part
    capsule: bool = False  # poles at both ends (cost 4 in 2V - F) instead of a pipe (cost 0)
    dome: tuple[float, float] = (1.0, 1.0)  # length of the rounded start / end, in mean radii (short = blunt end)


def _mirror_vec(v: Vec) -> Vec:
    return (-v[0], v[1], v[2])


def _mirrored(parts: list[_Part], mapping: dict[int, int]) -> list[_Part]:
    return [_Part(mapping[p.joint], _mirror_vec(p.start), _mirror_vec(p.end), p.radii, p.up, p.ring, p.count,
                  p.capsule, p.dome) for p in parts]


# ----------------------------------------------------------------------------------------------------------------
# Designed rest skeleton and part table
Y, Z = (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
_FINGERS = {  # name: (first joint, knuckle offset from the wrist, segment lengths incl. the tip), left hand
    "index": (25, (0.088, 0.0, 0.024), (0.038, 0.024, 0.022)),
    "middle": (28, (0.092, 0.0, 0.006), (0.042, 0.027, 0.023)),
    "pinky": (31, (0.080, 0.0, -0.027), (0.031, 0.020, 0.019)),
    "ring": (34, (0.088, 0.0, -0.011), (0.039, 0.025, 0.022)),
}
_THUMB = (37, (0.025, -0.008, 0.022), (0.035, 0.030, 0.026))
_THUMB_DIR = np.array([1.0, -0.15, 0.8]) / np.linalg.norm([1.0, -0.15, 0.8])


def _smplx_joints() -> np.ndarray:
    """(55, 3) designed rest joints of the stand-in SMPL-X (metres)."""
    j = np.zeros((55, 3))
    left = {1: (0.085, -0.09, 0.0), 4: (0.095, -0.48, 0.005), 7: (0.10, -0.875, -0.035), 10: (0.11, -0.935, 0.085),
            13: (0.075, 0.43, -0.01), 16: (0.17, 0.45, -0.02), 18: (0.43, 0.45, -0.025), 20: (0.68, 0.45, -0.02),
            23: (0.032, 0.655, 0.092)}
    centre = {0: (0, 0, 0), 3: (0, 0.11, -0.015), 6: (0, 0.245, -0.005), 9: (0, 0.30, 0.01), 12: (0, 0.51, -0.02),
              15: (0, 0.60, 0.005), 22: (0, 0.575, 0.025)}
    for i, p in {**centre, **left}.items():
        j[i] = p
    wrist = j[20]
    for first, knuckle, seg in _FINGERS.values():
        p = wrist + knuckle
        for k in range(3):
            j[first + k] = p
            p = p + (seg[k], 0.0, 0.0)
    first, knuckle, seg = _THUMB
    p = wrist + knuckle
    for k in range(3):
        j[first + k] = p
        p = p + seg[k] * _THUMB_DIR
    for lj, rj in _MIRROR.items():
        j[rj] = j[lj] * (-1, 1, 1)
    return j


def _hand_parts(wrist: np.ndarray) -> list[_Part]:
    """Left palm and fingers (joint 20, 25-39): 296 + 4 x 96 + 98 = 778 vertices, the MANO count."""
    w = tuple(wrist)
    parts = [_Part(20, (w[0] - 0.015, w[1], w[2] - 0.002), (w[0] + 0.095, w[1], w[2] - 0.002),
                   (0.016, 0.042, 0.014, 0.045), Y, 20, 296, dome=(0.5, 0.5))]
    # Finger segments overlap their neighbours by a few mm and have blunt ends, so a bent finger stays closed.
    for first, knuckle, seg in _FINGERS.values():
        p = wrist + knuckle
        r = 0.0095 if first != 31 else 0.0085
        for k, n in enumerate((34, 32, 30)):
            q = p + (seg[k], 0.0, 0.0)
            parts.append(_Part(first + k, tuple(p - (0.008, 0, 0)), tuple(q + (0.004 if k < 2 else 0.0, 0, 0)),
                               (r * 0.85, r, r * 0.8, r * 0.92), Y, 8, n, dome=(0.4, 0.4 if k < 2 else 1.0)))
            p, r = q, r * 0.9
    first, knuckle, seg = _THUMB
    p, r = wrist + knuckle, 0.011
    for k, n in enumerate((36, 32, 30)):
        q = p + seg[k] * _THUMB_DIR
        parts.append(_Part(first + k, tuple(p - 0.008 * _THUMB_DIR), tuple(q + (0.004 if k < 2 else 0.0) * _THUMB_DIR),
                           (r, r, r * 0.9, r * 0.9), Y, 8, n, dome=(0.4, 0.4 if k < 2 else 1.0)))
        p, r = q, r * 0.9
    return parts


# Trunk and left limbs shared by SMPL-X and SMPL: joint -> (start, end, radii, up, ring size, dome).
# Blunt (short-dome) ends where a part tucks into its neighbour, round ones where it shows.
_BODY = {
    0: ((0, -0.16, 0), (0, 0.14, -0.01), (0.11, 0.16, 0.10, 0.145), Z, 40, (1.0, 0.2)),
    3: ((0, 0.09, -0.012), (0, 0.28, -0.005), (0.10, 0.145, 0.105, 0.15), Z, 40, (0.2, 0.2)),
    6: ((0, 0.23, -0.005), (0, 0.35, 0.005), (0.105, 0.15, 0.11, 0.16), Z, 40, (0.2, 0.2)),
    9: ((0, 0.30, 0.005), (0, 0.50, -0.015), (0.11, 0.165, 0.08, 0.13), Z, 40, (0.2, 0.8)),
    12: ((0, 0.46, -0.02), (0, 0.60, 0.0), (0.05, 0.05, 0.048, 0.048), Z, 32, (0.3, 0.3)),
    15: ((0, 0.53, 0.012), (0, 0.775, 0.012), (0.098, 0.078, 0.098, 0.078), Z, 48, (0.6, 1.0)),
    1: ((0.085, -0.05, 0.0), (0.095, -0.50, 0.005), (0.085, 0.085, 0.055, 0.055), Z, 24, (0.6, 0.4)),
    4: ((0.095, -0.46, 0.005), (0.10, -0.92, -0.035), (0.055, 0.055, 0.038, 0.038), Z, 20, (0.4, 0.6)),
    7: ((0.10, -0.915, -0.075), (0.105, -0.925, 0.09), (0.04, 0.038, 0.03, 0.045), Y, 16, (1.0, 0.5)),
    10: ((0.108, -0.935, 0.07), (0.11, -0.94, 0.18), (0.022, 0.045, 0.015, 0.04), Y, 14, (0.5, 1.0)),
    13: ((0.03, 0.43, -0.015), (0.19, 0.45, -0.02), (0.05, 0.055, 0.046, 0.046), Y, 16, (0.5, 0.3)),
    16: ((0.15, 0.45, -0.02), (0.45, 0.45, -0.025), (0.047, 0.047, 0.037, 0.037), Y, 20, (0.6, 0.5)),
    18: ((0.41, 0.45, -0.025), (0.69, 0.45, -0.02), (0.037, 0.04, 0.026, 0.03), Y, 16, (0.5, 0.6)),
}


def _body_parts(counts: dict[int, int], capsules: tuple[int, ...]) -> tuple[list[_Part], list[_Part]]:
    """(trunk parts, left limb parts) with the given vertex counts per joint."""
    centre, left = [], []
    for jid, count in counts.items():
        start, end, radii, up, ring, dome = _BODY[jid]
        part = _Part(jid, start, end, radii, up, ring, count, jid in capsules, dome)
        (centre if start[0] == 0 else left).append(part)
    return centre, left


def _smplx_parts(j: np.ndarray) -> list[_Part]:
    """Part table of the stand-in SMPL-X: 3896 body + 2 x 778 hand + 5023 FLAME vertices = 10475."""
    counts = {0: 380, 3: 260, 6: 200, 9: 440, 12: 480, 15: 2831,
              1: 300, 4: 240, 7: 150, 10: 110, 13: 100, 16: 220, 18: 188}
    centre, left = _body_parts(counts, capsules=(15, 10))
    centre.append(_Part(22, tuple(j[22]), (0, 0.552, 0.095), (0.022, 0.048, 0.018, 0.03), Y, 32, 620, dome=(0.5, 1.0)))
    left += _hand_parts(j[20])
    e = j[23]
    eye = [_Part(23, (e[0], e[1], e[2] - 0.012), (e[0], e[1], e[2] + 0.012), (0.012,) * 4, Y, 32, 546, capsule=True)]
    # Natural vertex order: face region first, eyes last (as in the official mesh, whose eyeballs are 9383-10474).
    return centre + left + _mirrored(left, _MIRROR) + eye + _mirrored(eye, _MIRROR)


def _smplx_specials(j: np.ndarray) -> list[tuple[int, int, Vec]]:
    """(vertex id hard-coded by smplx, part joint, target point): the nearest outer vertex of the part is used."""
    sp: list[tuple[int, int, Vec]] = [(9120, 15, (0, 0.635, 0.4)), (9929, 24, (-0.032, 0.655, 0.4)),
                                      (9448, 23, (0.032, 0.655, 0.4)), (616, 15, (-0.3, 0.645, 0.012)),
                                      (6, 15, (0.3, 0.645, 0.012))]
    for s, (big, small, heel) in ((1, (5770, 5780, 8846)), (-1, (8463, 8474, 8635))):
        foot, ankle = (10, 7) if s > 0 else (11, 8)
        sp += [(big, foot, (s * 0.075, -0.94, 0.3)), (small, foot, (s * 0.15, -0.94, 0.3)),
               (heel, ankle, (s * 0.10, -1.1, -0.2))]
    tips = {"l": (5361, 4933, 5058, 5169, 5286), "r": (8079, 7669, 7794, 7905, 8022)}  # thumb index middle ring pinky
    for side, off in (("l", 0), ("r", 15)):
        for vid, last in zip(tips[side], (39, 27, 30, 36, 33)):
            d = j[last + off] - j[last + off - 1]
            sp.append((vid, last + off, tuple(j[last + off] + d / np.linalg.norm(d) * 0.3)))
    return sp


def _smpl_parts(j: np.ndarray) -> list[_Part]:
    """Part table of the stand-in SMPL (24 joints, 6890 vertices); hands are mittens (joints 22/23)."""
    counts = {0: 400, 3: 250, 6: 200, 9: 450, 12: 250, 15: 1700,
              1: 330, 4: 260, 7: 170, 10: 110, 13: 110, 16: 250, 18: 220}
    centre, left = _body_parts(counts, capsules=(15,))
    w = j[20]
    left += [
        _Part(20, (w[0] - 0.015, w[1], w[2]), (w[0] + 0.095, w[1], w[2]), (0.016, 0.042, 0.014, 0.045), Y, 20, 180,
              dome=(0.5, 0.5)),
        _Part(22, (w[0] + 0.08, w[1], w[2]), (w[0] + 0.19, w[1], w[2]), (0.013, 0.045, 0.01, 0.035), Y, 20, 190),
    ]
    mapping = {**{k: v for k, v in _MIRROR.items() if k < 22}, 22: 23}
    return centre + left + _mirrored(left, mapping)


def _smpl_specials(j: np.ndarray) -> list[tuple[int, int, Vec]]:
    """The smplx package's 'smplh' vertex ids (used for SMPL too), placed like the SMPL-X ones."""
    sp: list[tuple[int, int, Vec]] = [(332, 15, (0, 0.635, 0.4)), (6260, 15, (-0.032, 0.655, 0.11)),
                                      (2800, 15, (0.032, 0.655, 0.11)), (4071, 15, (-0.3, 0.645, 0.012)),
                                      (583, 15, (0.3, 0.645, 0.012))]
    for s, (big, small, heel) in ((1, (3216, 3226, 3387)), (-1, (6617, 6624, 6787))):
        foot, ankle = (10, 7) if s > 0 else (11, 8)
        sp += [(big, foot, (s * 0.075, -0.94, 0.3)), (small, foot, (s * 0.15, -0.94, 0.3)),
               (heel, ankle, (s * 0.10, -1.1, -0.2))]
    for s, hand, ids in ((1, 22, (2746, 2319, 2445, 2556, 2673)), (-1, 23, (6191, 5782, 5905, 6016, 6133))):
        w = j[20] if s > 0 else j[21]
        for vid, dz in zip(ids, (0.06, 0.024, 0.006, -0.011, -0.027)):
            dx = 0.12 if vid in (2746, 6191) else 0.3
            sp.append((vid, hand, (w[0] + s * dx, w[1], w[2] + dz)))
    return sp


# ----------------------------------------------------------------------------------------------------------------
# Mesh construction
def _band(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangles joining ring `a` to the next ring `b` of the stack (any sizes, vertex 0 of each at angle 0).

    Winding (a_i, a_i+1, b_j) keeps normals pointing out of the closed surface when rings run around the stack
    direction counter-clockwise; a ring of size 1 is a pole.
    """
    na, nb = len(a), len(b)
    tris, i, k = [], 0, 0
    while i < na or k < nb:
        # advance the ring whose next vertex comes first by angle; a pole (size 1) only closes the fan
        if na == 1:
            adv_a = k == nb
        elif nb == 1:
            adv_a = i < na
        else:
            adv_a = k == nb or (i < na and (i + 1) / na <= (k + 1) / nb)
        if adv_a:
            if na > 1:
                tris.append((a[i], a[(i + 1) % na], b[k % nb]))
            i += 1
        else:
            if nb > 1:
                tris.append((a[i % na], b[(k + 1) % nb], b[k]))
            k += 1
    return tris


def _build_part(p: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (n, 3), local faces (m, 3) and an outer-surface mask (n,) of one part."""
    start, end = np.asarray(p.start, float), np.asarray(p.end, float)
    length = float(np.linalg.norm(end - start))
    d = (end - start) / length
    up = np.asarray(p.up, float)
    e1 = up - up.dot(d) * d
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    a0, b0, a1, b1 = p.radii
    h0 = min(p.dome[0] * (a0 + b0) / 2, length / 2)  # lengths of the rounded ends
    h1 = min(p.dome[1] * (a1 + b1) / 2, length / 2)

    if p.capsule:
        n_outer = (p.count - 2) // p.ring
        sizes = [p.ring] * n_outer
        rem = p.count - 2 - n_outer * p.ring
    else:
        n_outer = (p.count - 6) // p.ring  # keep >= 6 vertices for the two inner rings
        sizes = [p.ring] * n_outer
        rem = 0
    if rem >= 3:
        sizes.append(rem)  # a smaller last ring, next to the distal pole where the dome is narrow
    elif rem:
        sizes[-1] += rem
    if p.capsule:  # rings between the poles
        s_out = (np.arange(len(sizes)) + 0.5) * length / len(sizes)
    else:  # rings from end to end (nearly: a ring on the very end of a round dome would collapse to a point)
        s_out = length * (0.02 + 0.96 * np.arange(len(sizes)) / (len(sizes) - 1))

    def half_axes(s: float) -> tuple[float, float]:
        """Outer half-axes at s: linear taper, shrunk on an elliptic profile over the dome lengths."""
        t = s / length
        f = np.sqrt(max(0.0, 1 - (max(0.0, h0 - s) / h0) ** 2) * max(0.0, 1 - (max(0.0, s - length + h1) / h1) ** 2))
        return (a0 + (a1 - a0) * t) * f, (b0 + (b1 - b0) * t) * f

    def ring(s: float, n: int, a: float, b: float) -> np.ndarray:
        th = 2 * np.pi * np.arange(n) / n
        return start + s * d + np.outer(a * np.cos(th), e1) + np.outer(b * np.sin(th), e2)

    rings = [ring(s, n, *half_axes(s)) for s, n in zip(s_out, sizes)]
    outer = [np.ones(len(r), bool) for r in rings]
    if p.capsule:
        rings = [start[None], *rings, end[None]]
        outer = [np.ones(1, bool), *outer, np.ones(1, bool)]
    else:  # inner channel: a distal then a proximal ring, well inside the end rings of the skin
        n_in = p.count - sum(sizes)
        r_in = min(_INNER_RADIUS, 0.5 * min(*half_axes(s_out[0]), *half_axes(s_out[-1])))
        rings += [ring(s_out[-1], n_in - n_in // 2, r_in, r_in), ring(s_out[0], n_in // 2, r_in, r_in)]
        outer += [np.zeros(n_in - n_in // 2, bool), np.zeros(n_in // 2, bool)]
    offsets = np.cumsum([0] + [len(r) for r in rings])
    idx = [np.arange(offsets[k], offsets[k + 1]) for k in range(len(rings))]
    tris = []
    for k in range(len(rings) - 1):
        tris += _band(idx[k], idx[k + 1])
    if not p.capsule:  # close the torus: proximal inner ring back to the first outer ring
        tris += _band(idx[-1], idx[0])
    verts = np.concatenate(rings)
    assert len(verts) == p.count, (p.joint, len(verts), p.count)
    return verts, np.asarray(tris, np.int64), np.concatenate(outer)


@dataclass
class _Mesh:
    verts: np.ndarray  # (V, 3) rest vertices, final ids
    faces: np.ndarray  # (F, 3)
    label: np.ndarray  # (V,) owning joint
    outer: np.ndarray  # (V,) on the visible skin (not a pipe's inner channel)
    frac: np.ndarray  # (V,) position along the owning part's segment, 0 at the joint, for LBS blending


def _assemble(parts: list[_Part], joints: np.ndarray, specials: list[tuple[int, int, Vec]], n_faces: int,
              tweak: Callable[[np.ndarray, np.ndarray], None] | None = None) -> _Mesh:
    """Concatenate parts, trim inner-channel faces to `n_faces`, then renumber so the special ids land in place."""
    vs, fs, labels, outers, fracs, inner_faces = [], [], [], [], [], []
    v_base = f_base = 0
    for p in parts:
        v, f, o = _build_part(p)
        d = np.asarray(p.end) - np.asarray(p.start)
        vs.append(v)
        fs.append(f + v_base)
        labels.append(np.full(len(v), p.joint))
        outers.append(o)
        fracs.append((v - joints[p.joint]) @ d / d.dot(d))
        inner = np.flatnonzero(~o[f].any(1))  # triangles with all corners on a pipe's inner channel
        if len(inner):
            inner_faces.append(f_base + int(inner[len(inner) // 2]))
        v_base += len(v)
        f_base += len(f)
    verts, faces = np.concatenate(vs), np.concatenate(fs)
    label, outer, frac = np.concatenate(labels), np.concatenate(outers), np.concatenate(fracs)
    if tweak is not None:
        tweak(verts, label)
    excess = len(faces) - n_faces
    assert 0 <= excess <= len(inner_faces), (len(faces), n_faces)
    # Opening one inner-channel triangle per part removes one face each without touching the visible skin.
    faces = np.delete(faces, inner_faces[:excess], axis=0)

    # Renumber: vertex `nat` gets id `new_id[nat]`; swap ids so each special vertex gets its hard-coded id.
    new_id = np.arange(len(verts))
    owner = np.arange(len(verts))  # owner[id] = natural index holding it
    used: set[int] = set()
    for vid, joint, target in specials:
        cand = np.flatnonzero((label == joint) & outer)
        order = cand[np.argsort(np.linalg.norm(verts[cand] - np.asarray(target), axis=1), kind="stable")]
        nat = next(int(c) for c in order if int(c) not in used)
        used.add(nat)
        other = owner[vid]
        new_id[other], new_id[nat] = new_id[nat], vid
        owner[new_id[other]], owner[vid] = other, nat
    inv = np.empty_like(new_id)
    inv[new_id] = np.arange(len(new_id))
    mesh = _Mesh(verts[inv], new_id[faces], label[inv], outer[inv], frac[inv])
    for vid, joint, _ in specials:
        assert mesh.label[vid] == joint, (vid, joint)
    return mesh


def _nose_bump(verts: np.ndarray, label: np.ndarray) -> None:
    """Push the front of the head out into a nose (in place), so the nose vertex is a real tip."""
    head = np.flatnonzero(label == 15)
    centre = np.array([0.0, 0.632, 0.11])
    dist2 = ((verts[head] - centre) ** 2 * (1.0, 0.6, 0.0)).sum(1)
    front = verts[head, 2] > 0.05
    verts[head, 2] += np.where(front, 0.022 * np.exp(-dist2 / (2 * 0.012**2)), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Regressors, skinning weights, blend shapes
def _regress_rows(verts: np.ndarray, targets: np.ndarray, k: int = 160) -> np.ndarray:
    """(len(targets), V) non-negative rows, summing to 1, whose weighted vertices reproduce each target point.

    Non-negative least squares over the k nearest vertices: exact whenever the target lies in their convex hull
    (true for joints sitting on a pipe's inner channel or inside a capsule).
    """
    from scipy.optimize import nnls
    from scipy.spatial import cKDTree

    rows = np.zeros((len(targets), len(verts)))
    _, nn = cKDTree(verts).query(targets, k=k)
    for r, (t, ids) in enumerate(zip(targets, nn)):
        lam = 10.0  # weight of the sum-to-one row
        a = np.vstack([verts[ids].T, np.full(k, lam)])
        w, _ = nnls(a, np.concatenate([t, [lam]]))
        rows[r, ids] = w / w.sum()
    return rows


def _lbs_weights(mesh: _Mesh, parents: tuple[int, ...]) -> np.ndarray:
    """(V, J): a vertex belongs to its part; near the joint it shares up to 45 % of its weight with the parent."""
    n_j = len(parents)
    w = np.zeros((len(mesh.verts), n_j))
    own = np.clip(0.55 + 1.8 * mesh.frac, 0.55, 1.0)  # > 0.5: the owning joint stays the dominant one
    rigid = (mesh.label == 0) | np.isin(mesh.label, (23, 24)) if n_j == 55 else mesh.label == 0
    own[rigid] = 1.0  # the root has no parent; eyeballs turn rigidly
    rows = np.arange(len(w))
    w[rows, mesh.label] = own
    par = np.asarray(parents)[mesh.label]
    np.add.at(w, (rows[par >= 0], par[par >= 0]), 1.0 - own[par >= 0])
    return w


def _pose_dirs(mesh: _Mesh, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V, 3, 9 (J-1)): small displacements, linear in the offset from the owning joint, driven only by that joint.

    Column 9 (j - 1) + 3 r + c multiplies (R_j - I)[r, c]; 0.01 per unit feature and metre (a few mm at most).
    """
    n_j = len(joints)
    out = np.zeros((len(mesh.verts), 3, 9 * (n_j - 1)), np.float32)
    mats = rng.normal(0.0, 0.01, (n_j, 9, 3, 3))
    for j in range(1, n_j):
        ids = np.flatnonzero(mesh.label == j)
        rel = mesh.verts[ids] - joints[j]
        out[ids, :, 9 * (j - 1): 9 * j] = np.einsum("kab,nb->nak", mats[j], rel)
    return out


def _part_axis_offsets(mesh: _Mesh, parts: list[_Part]) -> np.ndarray:
    """(V, 3) offset of each vertex from the axis of its part (for the girth shape component)."""
    out = np.zeros_like(mesh.verts)
    for p in parts:
        ids = np.flatnonzero(mesh.label == p.joint)
        s, e = np.asarray(p.start), np.asarray(p.end)
        d = (e - s) / np.linalg.norm(e - s)
        rel = mesh.verts[ids] - s
        out[ids] = rel - np.outer(rel @ d, d)
    return out


def _shape_dirs(mesh: _Mesh, parts: list[_Part], n_comp: int, rng: np.random.Generator) -> np.ndarray:
    """(V, 3, n_comp) smooth shape components 0-9: height, girth, then random linear fields; the rest zero."""
    v = mesh.verts
    out = np.zeros((len(v), 3, n_comp), np.float32)
    out[:, 1, 0] = 0.05 * v[:, 1]  # beta 0: taller (5 % per unit), pelvis fixed
    out[:, :, 1] = 0.08 * _part_axis_offsets(mesh, parts)  # beta 1: thicker limbs and trunk, joints fixed
    for k in range(2, 10):
        out[:, :, k] = 0.02 * v @ rng.normal(size=(3, 3)).T
    return out


def _expr_dirs(mesh: _Mesh, rng: np.random.Generator) -> np.ndarray:
    """(V, 3, 10): smooth bumps of up to 4 mm per unit on the front of the head and jaw, zero elsewhere."""
    face = np.flatnonzero(np.isin(mesh.label, (15, 22)) & mesh.outer & (mesh.verts[:, 2] > 0.04)
                          & (mesh.verts[:, 1] > 0.53) & (mesh.verts[:, 1] < 0.7))
    out = np.zeros((len(mesh.verts), 3, 10), np.float32)
    centres = mesh.verts[rng.choice(face, 10, replace=False)]
    dirs = rng.normal(size=(10, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    for k in range(10):
        g = np.exp(-((mesh.verts[face] - centres[k]) ** 2).sum(1) / (2 * 0.025**2))
        out[face, :, k] = 0.004 * g[:, None] * dirs[k]
    return out


def _face_landmarks(mesh: _Mesh, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """51 static landmark faces on the front of the face and a 79 x 17 yaw-indexed jaw-contour table."""
    faces = mesh.faces
    ok = np.isin(mesh.label[faces], (15, 22)).all(1) & mesh.outer[faces].all(1)
    cand = np.flatnonzero(ok)
    cent = mesh.verts[faces[cand]].mean(1)
    front = cent[:, 2] > 0.04

    def nearest_front(xy: tuple[float, float]) -> int:
        """The visible face under (x, y) seen from the front: front-most among those within 3 mm of the nearest."""
        d = np.sqrt(((cent[:, :2] - xy) ** 2).sum(1)) + np.where(front, 0.0, 1e3)
        near = np.flatnonzero(d < d.min() + 0.003)
        return int(cand[near[np.argmax(cent[near, 2])]])

    def mirror(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(-x, y) for x, y in reversed(pts)]

    brow_r = [(-0.055 + 0.01 * i, 0.68 + 0.004 * min(i, 4 - i)) for i in range(5)]
    eye_r = [(-0.046, 0.655), (-0.038, 0.661), (-0.026, 0.661), (-0.018, 0.655), (-0.026, 0.650), (-0.038, 0.650)]
    eye_l = [(-x, y) for x, y in eye_r[3::-1]] + [(-x, y) for x, y in eye_r[:3:-1]]
    mouth = [(-0.025, 0.595), (-0.016, 0.6), (-0.007, 0.602), (0.0, 0.601), (0.007, 0.602), (0.016, 0.6),
             (0.025, 0.595), (0.016, 0.588), (0.007, 0.585), (0.0, 0.584), (-0.007, 0.585), (-0.016, 0.588)]
    lips = [(-0.02, 0.595), (-0.008, 0.597), (0.0, 0.597), (0.008, 0.597), (0.02, 0.595),
            (0.008, 0.592), (0.0, 0.592), (-0.008, 0.592)]
    pts = (brow_r + mirror(brow_r) + [(0.0, 0.665 - 0.01 * i) for i in range(4)]
           + [(-0.016 + 0.008 * i, 0.622 + 0.002 * min(i, 4 - i)) for i in range(5)] + eye_r + eye_l + mouth + lips)
    assert len(pts) == 51
    lmk = np.array([nearest_front(p) for p in pts], np.int64)

    # Contour: 17 points along the jaw line, azimuth -90..90 deg (subject's right to left); for a head yaw of
    # `a` deg (rows 0-39: a = row, rows 40-78: a = 39 - row) the visible silhouette shifts by -a.
    dyn = np.zeros((79, 17), np.int64)
    for row in range(79):
        yaw = row if row < 40 else 39 - row
        az = np.deg2rad(np.clip(np.linspace(-80, 80, 17) - 0.5 * yaw, -90, 90))
        tgt = np.stack([0.078 * np.sin(az), 0.557 + 0.08 * (1 - np.cos(az)), 0.012 + 0.098 * np.cos(az)], 1)
        dist = np.linalg.norm(cent[None] - tgt[:, None], axis=2)
        dyn[row] = cand[np.argmin(dist, axis=1)]
    return {"lmk_faces_idx": lmk, "lmk_bary_coords": rng.dirichlet((2, 2, 2), 51).astype(np.float32),
            "dynamic_lmk_faces_idx": dyn,
            "dynamic_lmk_bary_coords": rng.dirichlet((2, 2, 2), (79, 17)).astype(np.float32)}


def _hand_pose_prior(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """hands_meanl/r (45,) and hands_componentsl/r (45, 45).

    The mean is a mild curl (fingers flex towards the palm, about -z for the left hand whose fingers point +x
    with the palm down) plus noise; the right mean mirrors it per joint as (x, -y, -z). Components are random
    orthonormal rows (unused with use_pca=False).
    """
    mean_l = rng.normal(0.0, 0.05, (15, 3))
    mean_l[:12, 2] -= rng.uniform(0.15, 0.4, 12)
    mean_l[12:] += (0.1, -0.1, 0.2)
    mean_r = mean_l * (1, -1, -1)
    comp_l = np.linalg.qr(rng.normal(size=(45, 45)))[0].T
    comp_r = comp_l.reshape(45, 15, 3) * (1, -1, -1)
    return (mean_l.reshape(45).astype(np.float32), mean_r.reshape(45).astype(np.float32),
            comp_l.astype(np.float32), comp_r.reshape(45, 45).astype(np.float32))


def _kintree(parents: tuple[int, ...]) -> np.ndarray:
    row0 = np.array([ROOT_PARENT_SENTINEL if p < 0 else p for p in parents], np.int64)
    return np.stack([row0, np.arange(len(parents), dtype=np.int64)])


# ----------------------------------------------------------------------------------------------------------------
# Model assembly
def _smplx_arrays(seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(NEUTRAL npz arrays, auxiliary arrays) of the stand-in SMPL-X."""
    rng = np.random.default_rng([seed, 1])
    designed = _smplx_joints()
    parts = _smplx_parts(designed)
    mesh = _assemble(parts, designed, _smplx_specials(designed), SMPLX_FACE_NUM, tweak=_nose_bump)
    j_reg = _regress_rows(mesh.verts, designed)
    joints = j_reg @ mesh.verts
    shapedirs = _shape_dirs(mesh, parts, 400, rng)
    # SMPL-X 2020 layout (400 components): smplx reads the expressions from components 300-399.
    shapedirs[:, :, 300:310] = _expr_dirs(mesh, rng)
    mean_l, mean_r, comp_l, comp_r = _hand_pose_prior(rng)
    model = {
        "v_template": mesh.verts.astype(np.float32),
        "f": mesh.faces.astype(np.uint32),
        "J_regressor": j_reg.astype(np.float32),
        "kintree_table": _kintree(SMPLX_PARENTS),
        "weights": _lbs_weights(mesh, SMPLX_PARENTS).astype(np.float32),
        "posedirs": _pose_dirs(mesh, joints, rng),
        "shapedirs": shapedirs,
        "hands_componentsl": comp_l, "hands_componentsr": comp_r, "hands_meanl": mean_l, "hands_meanr": mean_r,
        **_face_landmarks(mesh, rng),
    }
    # LSP order: R ankle, R knee, R hip, L hip, L knee, L ankle, R wrist, R elbow, R shoulder, L shoulder,
    # L elbow, L wrist, neck, head top.
    top = mesh.verts[np.flatnonzero(mesh.label == 15)]
    j14_targets = np.vstack([designed[[8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12]], top[np.argmax(top[:, 1])]])
    aux = {
        "j14": _regress_rows(mesh.verts, j14_targets),
        "left_hand": np.flatnonzero(np.isin(mesh.label, HAND_JOINTS["left"])).astype(np.int64),
        "right_hand": np.flatnonzero(np.isin(mesh.label, HAND_JOINTS["right"])).astype(np.int64),
        "flame": np.flatnonzero(np.isin(mesh.label, FLAME_JOINTS)).astype(np.int64),
    }
    return model, aux


def _smpl_arrays(seed: int) -> dict[str, object]:
    """NEUTRAL pickle content of the stand-in SMPL (J_regressor as scipy.sparse csc, like the official file)."""
    from scipy import sparse

    rng = np.random.default_rng([seed, 2])
    x = _smplx_joints()
    designed = np.vstack([x[:22], x[20] + (0.088, 0, 0), x[21] - (0.088, 0, 0)])
    parts = _smpl_parts(designed)
    mesh = _assemble(parts, designed, _smpl_specials(designed), SMPL_FACE_NUM, tweak=_nose_bump)
    j_reg = _regress_rows(mesh.verts, designed)
    joints = j_reg @ mesh.verts
    return {
        "v_template": mesh.verts,
        "f": mesh.faces.astype(np.uint32),
        "J_regressor": sparse.csc_matrix(j_reg),
        "weights": _lbs_weights(mesh, SMPL_PARENTS),
        "kintree_table": _kintree(SMPL_PARENTS),
        "shapedirs": _shape_dirs(mesh, parts, 10, rng).astype(np.float64),
        # float32 (the official file has float64): halves the largest array (34 -> 17 MB); smplx loads it as float32
        "posedirs": _pose_dirs(mesh, joints, rng),
        "J": joints,
    }


def _scaled(arrays: dict, scale: float) -> dict:
    """The same model uniformly scaled about the pelvis (lengths scale, regressors and weights do not)."""
    if scale == 1.0:
        return arrays
    out = dict(arrays)
    for key in ("v_template", "shapedirs", "posedirs", "J"):
        if key in out:
            out[key] = (out[key] * scale).astype(out[key].dtype)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Deterministic, atomic writers
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: np.savez would stamp the current time


def _atomic_write(path: Path, write: Callable) -> None:
    """Write through `write(fileobj)` into a temp file in the same folder, then rename over `path`."""
    with atomic_open(path, "wb") as fh:
        write(fh)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)

    _atomic_write(path, write)


def _write_pickle(path: Path, obj: object) -> None:
    _atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=2))


def _write_npy(path: Path, arr: np.ndarray) -> None:
    _atomic_write(path, lambda fh: np.lib.format.write_array(fh, arr, allow_pickle=False))


def synthetic_file_names(smpl: bool = True) -> list[str]:
    """Relative paths written by :func:`write_synthetic_body_models`."""
    names = [f"smplx/SMPLX_{g}.npz" for g in GENDER_SCALE]
    names += ["smplx/SMPLX_to_J14.pkl", "smplx/MANO_SMPLX_vertex_ids.pkl", "smplx/SMPL-X__FLAME_vertex_ids.npy"]
    if smpl:
        names += [f"smpl/SMPL_{g}.pkl" for g in GENDER_SCALE]
    return names


def write_synthetic_body_models(out_dir: str | os.PathLike, seed: int = 0, smpl: bool = True,
                                overwrite: bool = False) -> list[Path]:
    """Write licence-free stand-in SMPL-X (and SMPL) files under `out_dir`; returns the paths written.

    Same seed -> byte-identical files. Raises FileExistsError (before writing anything) if a target exists and
    `overwrite` is False. Each file is written atomically (temp file + rename).
    """
    out = Path(out_dir).resolve()
    targets = [out / n for n in synthetic_file_names(smpl)]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing body-model files (use --overwrite): "
                              f"{', '.join(existing)}")
    model, aux = _smplx_arrays(seed)
    written = []
    for gender, scale in GENDER_SCALE.items():
        path = out / "smplx" / f"SMPLX_{gender}.npz"
        _write_npz(path, _scaled(model, scale))
        written.append(path)
    _write_pickle(out / "smplx" / "SMPLX_to_J14.pkl", aux["j14"])
    _write_pickle(out / "smplx" / "MANO_SMPLX_vertex_ids.pkl",
                  {"left_hand": aux["left_hand"], "right_hand": aux["right_hand"]})
    _write_npy(out / "smplx" / "SMPL-X__FLAME_vertex_ids.npy", aux["flame"])
    written += [out / "smplx" / n for n in ("SMPLX_to_J14.pkl", "MANO_SMPLX_vertex_ids.pkl",
                                            "SMPL-X__FLAME_vertex_ids.npy")]
    if smpl:
        smpl_model = _smpl_arrays(seed)
        for gender, scale in GENDER_SCALE.items():
            path = out / "smpl" / f"SMPL_{gender}.pkl"
            _write_pickle(path, _scaled(smpl_model, scale))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.body_model.synthetic",
        description="Write licence-free STAND-IN SMPL-X/SMPL files (official names and formats) for testing. "
                    "They are NOT the real SMPL-X model: the mesh is a mannequin of capsules.")
    parser.add_argument("out_dir", help="folder to create smplx/ (and smpl/) in; pass it as --body-model-dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-smpl", action="store_true", help="skip the SMPL files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        paths = write_synthetic_body_models(args.out_dir, seed=args.seed, smpl=not args.no_smpl,
                                            overwrite=args.overwrite)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
    print(f"{len(paths)} files in {time.perf_counter() - t0:.1f} s.")
    print("NOTE: these are synthetic STAND-INS, NOT the real SMPL-X/SMPL body model. The meshes are not meaningful "
          "human shapes: use them only for tests and trying the code, never for results on real images.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
