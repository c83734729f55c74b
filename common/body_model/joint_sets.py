"""Joint sets of SMPLer-X (facts sheet section 1), as plain constants.

Four index spaces are used throughout the code base:

* **layer joints** (144): what the SMPL-X layer returns with ``use_face_contour=True``: 55 kinematic joints,
  21 vertex-picked extras, 51 static face landmarks, 17 dynamic contour landmarks.
* **rotation set** (53, ``ORIG_*``): the SMPL-X kinematic joints whose rotations the network predicts
  (22 body incl. root, 15 + 15 hand joints, jaw). The flat pose vector (159) is root | body | lhand | rhand | jaw.
* **supervision set** (137, ``JOINTS_NAME``): 25 body + 40 hand + 72 face keypoints, picked from the layer joints
  by ``JOINT_IDX``.
* **position set** (65, ``POS_*``): the first 65 entries of the supervision set (body + hands), predicted by the
  position nets as heat-map coordinates.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------------------------------
# 53-joint rotation set
ORIG_JOINTS_NAME: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine_1", "L_Knee", "R_Knee", "Spine_2", "L_Ankle", "R_Ankle", "Spine_3",
    "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist",
    *(f"L_{f}_{i}" for f in ("Index", "Middle", "Pinky", "Ring", "Thumb") for i in (1, 2, 3)),
    *(f"R_{f}_{i}" for f in ("Index", "Middle", "Pinky", "Ring", "Thumb") for i in (1, 2, 3)),
    "Jaw",
)
ORIG_JOINT_NUM = 53
ORIG_ROOT_IDX = 0
ORIG_JOINT_PART: dict[str, range] = {
    "body": range(0, 22),
    "lhand": range(22, 37),
    "rhand": range(37, 52),
    "face": range(52, 53),
}
ORIG_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21),
    *((22 + k, 37 + k) for k in range(15)),
)
# Lengths of the flat 159-d pose vector, in order root | body (21 joints) | lhand | rhand | jaw.
POSE_SPLITS: tuple[int, ...] = (3, 63, 45, 45, 3)

# ----------------------------------------------------------------------------------------------------------------
# 137-joint supervision set
_FINGERS_137 = ("Thumb", "Index", "Middle", "Ring", "Pinky")
JOINTS_NAME: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck", "L_Shoulder", "R_Shoulder",
    "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe",
    "R_Heel", "L_Ear", "R_Ear", "L_Eye", "R_Eye", "Nose",
    *(f"L_{f}_{i}" for f in _FINGERS_137 for i in (1, 2, 3, 4)),
    *(f"R_{f}_{i}" for f in _FINGERS_137 for i in (1, 2, 3, 4)),
    *(f"Face_{i}" for i in range(1, 73)),
)
JOINT_NUM = 137
ROOT_IDX = 0
LWRIST_IDX = 12
RWRIST_IDX = 13
NECK_IDX = 7
JOINT_PART: dict[str, range] = {
    "body": range(0, 25),
    "lhand": range(25, 45),
    "rhand": range(45, 65),
    "hand": range(25, 65),
    "face": range(65, 137),
}
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (8, 9), (10, 11), (12, 13), (14, 17), (15, 18), (16, 19), (20, 21), (22, 23),
    *((25 + k, 45 + k) for k in range(20)),
    (67, 68),
    (69, 78), (70, 77), (71, 76), (72, 75), (73, 74),
    (83, 87), (84, 86),
    (88, 97), (89, 96), (90, 95), (91, 94), (92, 99), (93, 98),
    (100, 106), (101, 105), (102, 104), (107, 111), (108, 110),
    (112, 116), (113, 115), (117, 119),
    (120, 136), (121, 135), (122, 134), (123, 133), (124, 132), (125, 131), (126, 130), (127, 129),
)
# Index into the 144 layer joints for each of the 137 supervision joints.
JOINT_IDX: tuple[int, ...] = (
    # body
    0, 1, 2, 4, 5, 7, 8, 12, 16, 17, 18, 19, 20, 21, 60, 61, 62, 63, 64, 65, 59, 58, 57, 56, 55,
    # left hand: thumb, index, middle, ring, pinky; joints 1-3 from the tree, 4 = finger-tip vertex
    37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70,
    # right hand
    52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75,
    # face: jaw, head, left-eye vertex, right-eye vertex, 51 static landmarks, 17 contour landmarks
    22, 15, 57, 56, *range(76, 144),
)
LAYER_JOINT_NUM = 144

# ----------------------------------------------------------------------------------------------------------------
# 65-joint position set (body + hands of the supervision set)
POS_JOINT_NUM = 65
POS_JOINTS_NAME: tuple[str, ...] = JOINTS_NAME[:POS_JOINT_NUM]
POS_JOINT_PART: dict[str, range] = {
    "body": range(0, 25),
    "lhand": range(25, 45),
    "rhand": range(45, 65),
    "hand": range(25, 65),
}
BODY_POS_JOINT_NUM = 25
HAND_POS_JOINT_NUM = 20

# ----------------------------------------------------------------------------------------------------------------
# Rows of the neutral SMPL-X J_regressor (55 x V) used by the evaluation alignments.
J_REGRESSOR_IDX: dict[str, int] = {"pelvis": 0, "lwrist": 20, "rwrist": 21, "neck": 12}
# 21-joint hand regressors: ints are J_regressor rows, ("v", i) a one-hot row on vertex i (the finger tips).
HAND_REGRESSOR_ROWS: dict[str, tuple] = {
    "left": (20, 37, 38, 39, ("v", 5361), 25, 26, 27, ("v", 4933), 28, 29, 30, ("v", 5058),
             34, 35, 36, ("v", 5169), 31, 32, 33, ("v", 5286)),
    "right": (21, 52, 53, 54, ("v", 8079), 40, 41, 42, ("v", 7669), 43, 44, 45, ("v", 7794),
              49, 50, 51, ("v", 7905), 46, 47, 48, ("v", 8022)),
}

SMPLX_VERTEX_NUM = 10475
SMPLX_FACE_NUM = 20908
SHAPE_PARAM_DIM = 10
EXPR_PARAM_DIM = 10


def reduce_joint_set(joints_137):
    """(B, 137, ...) supervision-set array -> (B, 65, ...) position-set array (body + hands)."""
    return joints_137[:, :POS_JOINT_NUM]


def _check() -> None:
    assert len(ORIG_JOINTS_NAME) == ORIG_JOINT_NUM
    assert len(JOINTS_NAME) == JOINT_NUM == len(JOINT_IDX)
    assert sum(POSE_SPLITS) == ORIG_JOINT_NUM * 3
    # the eye vertices serve both as body joints (L_Eye, R_Eye) and as face keypoints (Face_3, Face_4)
    assert len(set(JOINT_IDX)) == JOINT_NUM - 2 and max(JOINT_IDX) == LAYER_JOINT_NUM - 1
    assert JOINTS_NAME[LWRIST_IDX] == "L_Wrist" and JOINTS_NAME[RWRIST_IDX] == "R_Wrist"
    assert JOINTS_NAME[NECK_IDX] == "Neck"


_check()
