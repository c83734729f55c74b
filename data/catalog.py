"""Catalog of the datasets of SMPLer-X-32 (the original ``config_smpler_x_h32.py``) and its test sets.

One frozen :class:`DatasetSpec` row per dataset replaces the original's 27 near-identical HumanData classes: the
annotation files per split, the image root, the default sample intervals, the camera, the fallback image size and
the named quirks. All paths are relative to the data root (``dataset/`` by default, :data:`common.paths.DATASET_DIR`).

* ``loader='humandata'``: an mmhuman3d HumanData ``.npz`` under ``preprocessed_datasets/`` read by
  :func:`data.humandata.load_humandata`; a split may consist of several files (``MPI_INF_3DHP`` part 1-3 ...).
* ``loader='own'``: a dataset with its own annotation format (MSCOCO, AGORA, UBody, EHF ...); its loader is a
  separate module. The row states its files so that a missing download is reported before anything is loaded.

A file name may contain ``{scene}``: it is expanded over the sub-folders of ``scene_dir`` (UBody keeps one
annotation folder per scene).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError, InputError
from common.paths import DATASET_DIR

HUMANDATA_DIR = "preprocessed_datasets"

# Quirks a catalog row may name. "reader" quirks are applied by data/humandata.py while loading; "pipeline" quirks
# are read by the sample pipeline (data/targets.py) from the spec.
QUIRKS: dict[str, str] = {
    "bedlam": "reader: betas truncated to 10; hand poses are flat-hand-mean, the SMPL-X hand means are subtracted",
    "talkshow": "reader: expression stored with more than 10 coefficients, truncated to 10 (the original also "
                "copied the left-hand pose into the right hand; that defect is not reproduced)",
    "humandata_eye_swap": "reader: reproduce the original HumanData 137 mapping whose Face_3/Face_4 are the right/left "
                          "eye (off by default: the model's Face_3/Face_4 are left/right eye)",
    "renbody_model_joints": "pipeline: 3D joint targets come from the SMPL-X fit, not the file's keypoints3d",
}


class DatasetFilesMissing(InputError, FileNotFoundError):
    """Annotation files or image folders of a dataset are missing under the data root."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the catalog. Paths are relative to the data root (``dataset/``), POSIX separators."""

    name: str  # canonical spelling, as in the configs (``EgoBody_Kinect``)
    loader: str  # 'humandata' or 'own'
    files: dict[str, tuple[str, ...]] = field(hash=False)  # split -> annotation files
    img_dir: str  # image root; HumanData ``image_path`` entries are relative to it ('' = the data root itself)
    # split -> default sample interval (every n-th row is kept; a split not listed uses 1)
    sample_interval: dict[str, int] = field(default_factory=dict, hash=False)
    focal: tuple[float, float] | None = None  # px (fx, fy), for datasets with one fixed camera
    princpt: tuple[float, float] | None = None  # px (cx, cy)
    img_shape: tuple[int, int] | None = None  # (h, w) px, used when an annotation has no per-sample meta size
    quirks: frozenset[str] = frozenset()  # names from QUIRKS
    params_optional: bool = False  # HumanData only: a file without smplx/smpl/smplh parameters is allowed
    scene_dir: str = ""  # folder whose sub-folders expand ``{scene}`` in file names
    notes: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    @property
    def has_test(self) -> bool:
        return "test" in self.files

    def interval(self, split: str) -> int:
        """Default sample interval of ``split`` (every n-th row is kept)."""
        return int(self.sample_interval.get(split, 1))

    def camera(self) -> dict[str, tuple[float, float]]:
        """The fixed camera as the datalist ``camera`` dict: ``focal``/``princpt`` (px), or {} when per sample."""
        cam: dict[str, tuple[float, float]] = {}
        if self.focal is not None:
            cam["focal"] = self.focal
        if self.princpt is not None:
            cam["princpt"] = self.princpt
        return cam


def _hd(name: str, train: tuple[str, ...], test: tuple[str, ...] = (), *, img_dir: str | None = None,
        train_interval: int = 1, test_interval: int = 1, **kw) -> DatasetSpec:
    files = {"train": tuple(f"{HUMANDATA_DIR}/{f}" for f in train)}
    if test:
        files["test"] = tuple(f"{HUMANDATA_DIR}/{f}" for f in test)
    interval = {"train": train_interval, **({"test": test_interval} if test else {})}
    return DatasetSpec(name=name, loader="humandata", files=files, img_dir=name if img_dir is None else img_dir,
                       sample_interval=interval, **kw)


_HD_1080P = (1080, 1920)
# The 26 HumanData sets of config_smpler_x_h32.py. File names, image roots, image sizes and cameras are those of the
# original per-dataset classes (data/<Name>/<Name>.py); train intervals those of the h32 config.
_HUMANDATA: tuple[DatasetSpec, ...] = (
    _hd("BEDLAM", ("bedlam_train.npz",), train_interval=5, quirks=frozenset({"bedlam"})),
    _hd("SPEC", ("spec_train_smpl.npz",), ("spec_test_smpl.npz",), img_shape=_HD_1080P),
    # GTA_Human2 and SynBody load their training file for any split in the original: no test split here.
    _hd("GTA_Human2", ("gta_human2multiple_230406_04000_0.npz",), img_shape=_HD_1080P,
        focal=(1158.0337, 1158.0337), princpt=(960.0, 540.0)),
    _hd("SynBody", ("synbody_train_230521_04000_fix_betas.npz",), img_shape=(720, 1280),
        focal=(540.0, 540.0), princpt=(640.0, 360.0)),
    _hd("PoseTrack", ("eft_posetrack.npz",), img_dir="PoseTrack/data/images"),
    _hd("EgoBody_Egocentric", ("egobody_egocentric_train_230425_065_fix_betas.npz",),
        ("egobody_egocentric_test_230425_043_fix_betas.npz",), img_dir="EgoBody", img_shape=_HD_1080P),
    _hd("PROX", ("prox_train_smplx_new.npz",), img_shape=_HD_1080P),
    _hd("CrowdPose", ("crowdpose_neural_annot_train_new.npz",)),
    _hd("EgoBody_Kinect", ("egobody_kinect_train_230503_065_fix_betas.npz",),
        ("egobody_kinect_test_230503_043_fix_betas.npz",), img_dir="EgoBody", img_shape=_HD_1080P,
        train_interval=10),
    _hd("MPI_INF_3DHP", tuple(f"mpi_inf_3dhp_neural_annot_part{i}.npz" for i in (1, 2, 3)), train_interval=5),
    _hd("RICH", ("rich_train_fix_betas.npz",)),
    _hd("MuCo", ("muco3dhp_train.npz",), img_shape=(1024, 1024)),
    _hd("InstaVariety", ("insta_variety_neural_annot_train.npz",), img_shape=(224, 224), train_interval=10),
    _hd("Behave", ("behave_train_230516_231_downsampled.npz",), ("behave_test_230516_090_downsampled.npz",),
        img_shape=(1536, 2048)),
    _hd("UP3D", ("up3d_trainval.npz",)),
    _hd("ARCTIC", ("p1_train.npz",), ("p1_val.npz",), train_interval=10, test_interval=10,
        notes="the test split is ARCTIC's validation set p1_val"),
    _hd("OCHuman", ("eft_ochuman.npz",)),
    # CHI3D, HumanSC3D and FIT3D store image paths that start with the dataset folder: the image root is dataset/.
    _hd("CHI3D", tuple(f"CHI3D_train_230511_1492_{i}.npz" for i in range(2)), img_dir="", img_shape=(900, 900)),
    _hd("RenBody_HiRes", tuple(f"renbody_train_highrescam_230517_399_{i}_fix_betas.npz" for i in range(2)),
        ("renbody_test_highrescam_230517_78_0_fix_betas.npz",), img_dir="RenBody", train_interval=5,
        test_interval=10, quirks=frozenset({"renbody_model_joints"})),
    _hd("MTP", ("mtp_smplx_train.npz",)),
    _hd("HumanSC3D", tuple(f"HumanSC3D_train_230511_2752_{i}.npz" for i in range(3)), img_dir="",
        img_shape=(900, 900)),
    _hd("RenBody", tuple(f"renbody_train_230525_399_{i}.npz" for i in range(10)),
        tuple(f"renbody_test_230525_78_{i}.npz" for i in range(2)), quirks=frozenset({"renbody_model_joints"}),
        notes="the x5/x10/x20 configs use a train interval of 10"),
    _hd("FIT3D", tuple(f"FIT3D_train_230511_1504_{i}.npz" for i in range(6)), img_dir="", img_shape=(900, 900),
        train_interval=10),
    _hd("Talkshow", tuple(f"talkshow_smplx_{s}.npz" for s in ("chemistry", "conan", "oliver", "seth")),
        train_interval=10, quirks=frozenset({"talkshow"})),
    _hd("SSP3D", ("ssp3d_230525_311.npz",), img_shape=(512, 512)),
    _hd("LSPET", ("eft_lspet.npz",)),
)

_H36M_ANNOT = ("data", "camera", "joint_3d", "SMPLX_NeuralAnnot")
# Datasets with their own annotation formats (loaders in separate modules).
_OWN: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "MSCOCO", "own",
        {"train": ("MSCOCO/annotations/coco_wholebody_train_v1.0.json",
                   "MSCOCO/annotations/MSCOCO_train_SMPLX_all_NeuralAnnot.json"),
         "test": ("MSCOCO/annotations/coco_wholebody_val_v1.0.json",)},
        img_dir="MSCOCO/images",
        notes="COCO-WholeBody + NeuralAnnot SMPL-X fits; images under train2017/ and val2017/ (the original's "
              "fallback to a dataset/coco/ folder is not kept)"),
    DatasetSpec(
        "MPII", "own",
        {"train": ("MPII/data/annotations/train.json", "MPII/data/annotations/MPII_train_SMPLX_NeuralAnnot.json")},
        img_dir="MPII/data"),
    DatasetSpec(
        "Human36M", "own",
        {"train": (*(f"Human36M/annotations/Human36M_subject{s}_{k}.json" for s in (1, 5, 6, 7, 8)
                     for k in _H36M_ANNOT), "Human36M/J_regressor_h36m_smplx.npy"),
         "test": (*(f"Human36M/annotations/Human36M_subject{s}_{k}.json" for s in (9, 11) for k in _H36M_ANNOT),
                  "Human36M/J_regressor_h36m_smplx.npy")},
        img_dir="Human36M/images",
        notes="the loader also keeps every 5th frame (train) / 64th frame (test) of the videos, and camera 4 only "
              "in test"),
    DatasetSpec(
        "AGORA", "own",
        {"train": ("AGORA/data/AGORA_train_fix_betas.json",),
         "val": ("AGORA/data/AGORA_validation_fix_betas.json",),
         "test": ("AGORA/data/AGORA_test_bbox.json",)},
        img_dir="AGORA/data",
        notes="4K crops 3840x2160/<folder>_crop/<img>_ann_id_<id>.png (+ .json); test crops 3840x2160/test_crop/; "
              "the _fix_betas files are those of agora_fix_betas=True (h32)"),
    DatasetSpec(
        "UBody", "own",
        {split: ("UBody/splits/intra_scene_test_list.npy",
                 "UBody/annotations/{scene}/keypoint_annotation.json",
                 "UBody/annotations/{scene}/smplx_annotation.json") for split in ("train", "test")},
        img_dir="UBody/images", scene_dir="UBody/images", sample_interval={"train": 10, "test": 100},
        notes="one sub-dataset per scene folder of UBody/images; test = the videos listed in "
              "intra_scene_test_list.npy"),
    DatasetSpec(
        "PW3D", "own",
        {"train": ("PW3D/data/3DPW_train.json",), "test": ("PW3D/data/3DPW_test.json",)},
        img_dir="PW3D/data/imageFiles"),
    DatasetSpec(
        "EHF", "own", {"test": ("EHF/data/EHF.json",)}, img_dir="EHF/data",
        notes="ground-truth meshes EHF/data/<id>_align.ply next to the images"),
)

# The synthetic set of data/synthetic_humandata.py (rendered stand-in bodies, one pinhole camera), for tests, the
# demo and smoke runs: `python -m data.synthetic_humandata` defaults (640x480 images, focal 640 px).
_SYNTHETIC: tuple[DatasetSpec, ...] = (
    _hd("Synthetic", ("synthetic_train.npz",), ("synthetic_test.npz",), img_shape=(480, 640), focal=(640.0, 640.0),
        princpt=(320.0, 240.0), notes="generated: data.synthetic_humandata.prepare_synthetic_dataset"),
)
CATALOG: dict[str, DatasetSpec] = {s.name: s for s in (*_HUMANDATA, *_OWN, *_SYNTHETIC)}
HUMANDATA_NAMES: tuple[str, ...] = tuple(s.name for s in _HUMANDATA)
OWN_LOADER_NAMES: tuple[str, ...] = tuple(s.name for s in _OWN)


def _check() -> None:
    assert len(HUMANDATA_NAMES) == 26 and len(CATALOG) == 26 + len(_OWN) + len(_SYNTHETIC)
    for spec in CATALOG.values():
        assert spec.loader in ("humandata", "own"), spec.name
        assert set(spec.quirks) <= set(QUIRKS), spec.name
        assert set(spec.sample_interval) <= set(spec.files), spec.name


_check()


def get_spec(name: str) -> DatasetSpec:
    """The catalog row of ``name`` (canonical spelling); ConfigError listing the known names otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        pass
    by_lower = {k.lower(): k for k in CATALOG}
    close = [by_lower[name.lower()]] if name.lower() in by_lower else difflib.get_close_matches(name, CATALOG, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"unknown dataset '{name}'.{hint} Known datasets: {', '.join(sorted(CATALOG))}")


def find_spec_for_file(path: str | Path) -> DatasetSpec | None:
    """The HumanData catalog row one of whose annotation files has ``path``'s file name, or None."""
    name = Path(path).name
    for spec in _HUMANDATA:
        if any(Path(rel).name == name for files in spec.files.values() for rel in files):
            return spec
    return None


def _root(data_root: str | Path | None) -> Path:
    return Path(DATASET_DIR if data_root is None else data_root).absolute()


def resolve_img_dir(spec: DatasetSpec, data_root: str | Path | None = None) -> Path:
    """Absolute image root of ``spec`` under ``data_root`` (default ``dataset/``)."""
    root = _root(data_root)
    return root / spec.img_dir if spec.img_dir else root


def _scenes(root: Path, spec: DatasetSpec) -> list[str]:
    folder = root / spec.scene_dir
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def resolve_files(spec: DatasetSpec, split: str, data_root: str | Path | None = None) -> list[Path]:
    """Absolute annotation files of ``spec``'s ``split``, checked to exist (with the image root).

    Raises ConfigError for a split the dataset does not have, and :class:`DatasetFilesMissing` naming every missing
    file and folder together with the expected layout.
    """
    if split not in spec.files:
        raise ConfigError(f"dataset {spec.name} has no '{split}' split (it has: {', '.join(spec.splits)})")
    root = _root(data_root)
    missing: list[str] = []
    img_dir = resolve_img_dir(spec, root)
    if not img_dir.is_dir():
        missing.append(f"{spec.img_dir or '.'}/ (image folder)")
    rel_files: list[str] = []
    scenes = _scenes(root, spec) if spec.scene_dir else []
    for rel in spec.files[split]:
        if "{scene}" not in rel:
            rel_files.append(rel)
        elif scenes:
            rel_files.extend(rel.format(scene=s) for s in scenes)
        else:  # no scene folder at all: name the pattern itself
            missing.append(rel.replace("{scene}", "<scene>"))
    paths = [root / rel for rel in rel_files]
    missing += [rel for rel, p in zip(rel_files, paths) if not p.is_file()]
    if missing:
        listing = "\n  ".join(missing)
        raise DatasetFilesMissing(
            f"{spec.name} ({split}): {len(missing)} file(s)/folder(s) missing under {root}:\n  {listing}\n"
            f"Expected layout: {_layout(spec)}. Point the data root elsewhere with SMPLERX_DATASET_DIR if your data "
            "lives in another folder.")
    return paths


def _layout(spec: DatasetSpec) -> str:
    img = f"dataset/{spec.img_dir}/" if spec.img_dir else "dataset/ (image paths in the file start with the " \
                                                           "dataset folder)"
    if spec.loader == "humandata":
        return (f"HumanData annotations in dataset/{HUMANDATA_DIR}/*.npz (from the SMPLer-X data release) and images "
                f"under {img}")
    return f"annotations as listed above and images under {img}"
