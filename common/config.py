"""Typed configuration: one schema of nested dataclasses, Python config files, ``key=value`` overrides.

* Every key is declared once below, with its default and a comment giving its meaning and unit.
* Experiment files in ``config/`` are plain Python modules with ``get_config() -> Config``; a variant imports its
  parent and changes a few fields (see ``config/smpler_x_s32.py``).
* ``load_config(path_or_name, overrides)`` accepts a file path, a name in ``config/`` (``smpler_x_s32``) or the
  original's file names (``config_smpler_x_s32.py``). Overrides are ``section.key=value`` strings; unknown keys and
  values of the wrong type are rejected with a :class:`~common.errors.ConfigError`.
* The resolved config is saved as a plain dict (``config_to_dict``) in run folders and inside every checkpoint, and
  ``config_from_dict`` rebuilds it, so test and inference can rebuild the model from a checkpoint alone.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import logging
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.paths import CONFIG_DIR

log = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    """Network architecture and the geometric constants it was trained with (facts sheet sections 0 and 2)."""

    encoder_size: str = "h"  # ViT size: 'tiny' (tests only), 's', 'b', 'l', 'h' (see common/nets/vit.py)
    drop_path_rate: float | None = None  # stochastic depth at the last block; None = the size's default
    activation_checkpointing: bool = False  # recompute ViT blocks in backward to save memory (training only)
    num_task_tokens: int = 31  # shape, cam, expr, jaw, 2 hand (unused), 25 body-joint tokens
    upscale: int = 4  # hand-RoI feature upsampling: 16x12 -> 64x48 (deconv stack); one of 1, 2, 4, 8
    regressor_channels: int = 512  # width of body_conv / hand_conv before the pose regressors
    box_net_channels: int = 256  # width of the box-net deconv stack and size MLPs

    input_img_shape: tuple[int, int] = (512, 384)  # (H, W) px of the person crop given to the model
    input_body_shape: tuple[int, int] = (256, 192)  # (H, W) px the crop is downsampled to for the ViT (nearest)
    output_hm_shape: tuple[int, int, int] = (16, 16, 12)  # (D, H, W) body heat-map volume
    output_hand_hm_shape: tuple[int, int, int] = (16, 16, 16)  # (D, H, W) hand heat-map volume = hand RoI size
    input_hand_shape: tuple[int, int] = (256, 256)  # only its aspect ratio (w/h = 1) is used, for hand boxes
    input_face_shape: tuple[int, int] = (192, 192)  # only its aspect ratio (w/h = 1) is used, for face boxes
    hand_bbox_extension: float = 2.0  # predicted hand boxes are enlarged by this factor
    face_bbox_extension: float = 1.5  # predicted face boxes are enlarged by this factor

    focal: tuple[float, float] = (5000.0, 5000.0)  # virtual camera focal length, px of input_body_shape
    princpt: tuple[float, float] = (96.0, 128.0)  # virtual camera principal point, px of input_body_shape
    camera_3d_size: float = 2.5  # m; sets the depth range of the camera translation: t_z in (0, ~56.4 m)
    body_3d_size: float = 2.0  # m; depth-bin range of body heat maps (pelvis-relative, +-1 m)
    hand_3d_size: float = 0.3  # m; depth-bin range of hand heat maps (wrist-relative)
    face_3d_size: float = 0.3  # m; depth-bin range of face keypoints (neck-relative)

    # In training, detach the SMPL-X joints inside the 2D projection so the 2D loss only trains the camera. The
    # original switches this on implicitly when AGORA is the only 3D set and there are no 2D sets (ft_agora).
    detach_joint_projection: bool = False
    # Return all 144 SMPL-X layer joints in joint_proj / joint_cam instead of the 137 supervision joints
    # (the original does this for AGORA evaluation).
    all_layer_joints: bool = False


@dataclass
class PathsConfig:
    """File locations; empty strings mean the defaults of ``common/paths.py``."""

    body_model_dir: str = ""  # folder holding smplx/ (and smpl/); default common/utils/human_model_files
    encoder_pretrained: str = ""  # ViTPose .pth used to initialise the encoder for training; '' = random init
    pretrained_model: str = ""  # SMPLer-X checkpoint to fine-tune from or evaluate
    data_root: str = ""  # dataset root holding <Name>/ image folders and preprocessed_datasets/; '' = dataset/


@dataclass
class DataConfig:
    """Datasets (used by training and evaluation)."""

    trainset_3d: tuple[str, ...] = ()  # datasets with their own loaders and 3D / fitted annotations
    trainset_2d: tuple[str, ...] = ()  # datasets with 2D-only annotations
    trainset_humandata: tuple[str, ...] = ()  # HumanData .npz datasets
    testset: str = "EHF"  # evaluation set
    data_strategy: str = "balance"  # 'balance' (equal share per dataset) or 'concat'
    total_data_len: int = 4_500_000  # samples per epoch with 'balance'
    sample_interval: dict[str, int] = field(default_factory=dict)  # per-dataset train subsampling interval
    bbox_ratio: float = 1.2  # body box enlargement for training crops
    no_aug: bool = False  # disable train-time augmentation
    cache_timeout: float = 3600.0  # s a rank waits for local rank 0 to build a missing datalist cache (then fails)


@dataclass
class TrainConfig:
    """Optimisation (facts sheet section 5)."""

    lr: float = 1e-5  # Adam learning rate
    min_lr: float = 1e-6  # end of the per-iteration cosine schedule
    optimizer: str = "adam"  # 'adam' (the original: no weight decay) or 'adamw'
    weight_decay: float = 0.0  # AdamW only; not applied to biases, norms, embeddings and task tokens
    layer_decay: float = 1.0  # AdamW only: the encoder's block i gets lr * layer_decay ** (depth - i); 1 = off
    warmup_iters: int = 0  # linear warm-up from 0 over this many iterations (the original: none)
    grad_clip: float = 0.0  # clip the global gradient norm to this value; 0 = off (the original: off)
    amp: str = "auto"  # 'auto' = bf16 autocast on CUDA and fp32 on CPU; 'bf16' or 'off' to force
    max_nonfinite_steps: int = 20  # stop after this many consecutive steps with a non-finite loss (each is skipped)
    end_epoch: int = 10
    batch_size: int = 16  # per GPU / process
    num_workers: int = 2  # data-loader worker processes per GPU / process
    save_epoch: int = 1  # write a checkpoint every N epochs (and at the end)
    print_iters: int = 100  # log every N iterations
    seed: int = 2023
    syncbn: bool = True  # SyncBatchNorm across processes (CUDA only)
    fine_tune: str = ""  # '', 'backbone', 'neck_and_head' or 'head' (what stays trainable, as the original)
    smplx_pose_weight: float = 10.0
    smplx_shape_weight: float = 1.0
    smplx_kps_3d_weight: float = 100.0
    smplx_kps_2d_weight: float = 1.0
    net_kps_2d_weight: float = 1.0


@dataclass
class TestConfig:
    batch_size: int = 32  # per GPU / process


@dataclass
class Config:
    name: str = "smpler_x"  # experiment name (the config file's stem)
    model: ModelConfig = field(default_factory=ModelConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


# ---------------------------------------------------------------------------------------------------------------
# loading


def available_configs() -> list[str]:
    """Names of the config files shipped in ``config/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))


def resolve_config_path(path_or_name: str | Path) -> Path:
    """A config file path, a name in ``config/``, or an original-style ``config_<name>.py`` -> existing path."""
    p = Path(path_or_name)
    if p.is_file():
        return p.resolve()
    stem = p.name[: -len(".py")] if p.name.endswith(".py") else p.name
    for candidate in (stem, stem.removeprefix("config_")):
        q = CONFIG_DIR / f"{candidate}.py"
        if q.is_file():
            return q
    close = difflib.get_close_matches(stem.removeprefix("config_"), available_configs(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"config '{path_or_name}' not found (no such file, and no config/{stem}.py).{hint} "
                      f"Available: {', '.join(available_configs())}")


def load_config(path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """Load a config file (or name) and apply ``section.key=value`` overrides; returns a validated Config."""
    file = resolve_config_path(path)
    if file.parent == CONFIG_DIR.resolve():
        module = importlib.import_module(f"config.{file.stem}")
    else:
        spec = importlib.util.spec_from_file_location(f"_smplerx_user_config_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # a user file with a bug: say which file
            raise ConfigError(f"config file {file} failed to load: {type(err).__name__}: {err}") from err
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {file} has no get_config() function returning a Config")
    cfg = module.get_config()
    if not isinstance(cfg, Config):
        raise ConfigError(f"get_config() in {file} returned {type(cfg).__name__}, expected common.config.Config")
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    """Apply ``section.key=value`` strings in place (values parsed as Python literals, checked against types)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form section.key=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        set_by_path(cfg, key.strip(), raw.strip())
    return cfg


def set_by_path(cfg: Config, key: str, raw: Any) -> None:
    """Set ``cfg.<key>`` (dotted) from a raw string or value, converted to the declared type."""
    obj: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(obj)]
        if part not in names:
            prefix = ".".join(parts[:i])
            options = [f"{prefix}.{n}" if prefix else n for n in names]
            close = difflib.get_close_matches(key, _all_keys(cfg), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Keys here: {', '.join(options)}"
            raise ConfigError(f"unknown config key '{key}'.{hint}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
            if not dataclasses.is_dataclass(obj):
                raise ConfigError(f"config key '{'.'.join(parts[: i + 1])}' is a value, not a section")
    if dataclasses.is_dataclass(getattr(obj, parts[-1])):
        raise ConfigError(f"config key '{key}' is a section; set one of its keys, e.g. {key}.<name>=value")
    hints = typing.get_type_hints(type(obj))
    setattr(obj, parts[-1], _coerce(raw, hints[parts[-1]], key))


def _all_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        keys += _all_keys(v, f"{prefix}{f.name}.") if dataclasses.is_dataclass(v) else [f"{prefix}{f.name}"]
    return keys


def _coerce(raw: Any, tp: Any, key: str) -> Any:
    """Convert ``raw`` (string from the command line, or a value) to type ``tp``; raise ConfigError if it cannot."""
    if isinstance(raw, str):
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # bare words are strings: model.encoder_size=s
        if _is_str_type(tp) and not isinstance(value, str):
            value = raw  # keep '10' as a string where a string is expected
        if typing.get_origin(_strip_optional(tp)) is tuple and isinstance(value, str):
            # bare lists: data.trainset_3d=AGORA,MPII or [AGORA, MPII]
            inner = value.strip().strip("[]()")
            value = tuple(v.strip().strip("'\"") for v in inner.split(",") if v.strip())
        if _strip_optional(tp) is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            value = value.lower() in ("true", "yes")
    else:
        value = raw
    try:
        return _check_type(value, tp)
    except TypeError as err:
        raise ConfigError(f"config key '{key}': {err}") from None


def _is_str_type(tp: Any) -> bool:
    return _strip_optional(tp) is str


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _check_type(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a)
            except TypeError:
                pass
        raise TypeError(f"expected {tp}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise TypeError(f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected a string, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0]) for v in value)
        if len(value) != len(args):
            raise TypeError(f"expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_check_type(v, a) for v, a in zip(value, args))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise TypeError(f"expected a dict, got {value!r}")
        return {_check_type(k, kt): _check_type(v, vt) for k, v in value.items()}
    raise TypeError(f"unsupported config type {tp}")


def validate(cfg: Config) -> None:
    """Check values that types alone cannot (sizes, enums); raises ConfigError naming the key."""
    from common.nets.vit import VIT_SIZES  # local import: the config module stays import-light

    m = cfg.model
    if m.encoder_size not in VIT_SIZES:
        raise ConfigError(f"model.encoder_size='{m.encoder_size}' is not one of {', '.join(VIT_SIZES)}")
    if m.upscale not in (1, 2, 4, 8):
        raise ConfigError(f"model.upscale={m.upscale} must be 1, 2, 4 or 8")
    if m.num_task_tokens < 31:
        raise ConfigError(f"model.num_task_tokens={m.num_task_tokens}: the heads need at least 31 task tokens")
    ih, iw = m.input_body_shape
    if ih % 16 or iw % 16 or ih // 16 != m.output_hm_shape[1] or iw // 16 != m.output_hm_shape[2]:
        raise ConfigError(f"model.input_body_shape={m.input_body_shape} must be 16x model.output_hm_shape[1:]="
                          f"{m.output_hm_shape[1:]} (one heat-map cell per 16-px ViT patch)")
    if cfg.data.data_strategy not in ("balance", "concat"):
        raise ConfigError(f"data.data_strategy='{cfg.data.data_strategy}' must be 'balance' or 'concat'")
    if cfg.train.optimizer not in ("adam", "adamw"):
        raise ConfigError(f"train.optimizer='{cfg.train.optimizer}' must be 'adam' or 'adamw'")
    if cfg.train.amp not in ("auto", "bf16", "off"):
        raise ConfigError(f"train.amp='{cfg.train.amp}' must be 'auto', 'bf16' or 'off'")
    if cfg.train.fine_tune not in ("", "backbone", "neck_and_head", "head"):
        raise ConfigError(f"train.fine_tune='{cfg.train.fine_tune}' must be '', 'backbone', 'neck_and_head' or 'head'")
    t = cfg.train
    for key, value, low in (("train.end_epoch", t.end_epoch, 1), ("train.batch_size", t.batch_size, 1),
                            ("train.num_workers", t.num_workers, 0), ("train.save_epoch", t.save_epoch, 1),
                            ("train.print_iters", t.print_iters, 1), ("train.max_nonfinite_steps",
                                                                       t.max_nonfinite_steps, 1),
                            ("test.batch_size", cfg.test.batch_size, 1), ("data.total_data_len",
                                                                          cfg.data.total_data_len, 1)):
        if value < low:
            raise ConfigError(f"{key}={value} must be at least {low}")
    for key, value in (("train.lr", t.lr), ("train.min_lr", t.min_lr), ("train.weight_decay", t.weight_decay),
                       ("train.grad_clip", t.grad_clip), ("data.bbox_ratio", cfg.data.bbox_ratio)):
        if not value >= 0 or value == float("inf"):
            raise ConfigError(f"{key}={value} must be a finite number >= 0")
    bad = {k: v for k, v in cfg.data.sample_interval.items() if v < 1}
    if bad:
        raise ConfigError(f"data.sample_interval {bad}: intervals must be at least 1 (1 = every sample)")


# ---------------------------------------------------------------------------------------------------------------
# serialisation


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, JSON-serialisable dict of the whole config (tuples become lists)."""
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config saved by :func:`config_to_dict`. Unknown keys (from another version) are logged and
    ignored; missing keys keep their defaults."""
    cfg = Config()
    _fill(cfg, d, "")
    validate(cfg)
    return cfg


def _fill(obj: Any, d: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in d.items():
        if k not in names:
            log.warning("ignoring unknown config key '%s%s' (saved by another version?)", prefix, k)
            continue
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            _fill(cur, v, f"{prefix}{k}.")
        else:
            try:
                setattr(obj, k, _check_type(v, hints[k]))
            except TypeError as err:
                raise ConfigError(f"saved config key '{prefix}{k}': {err}") from None


def format_config(cfg: Config) -> str:
    """Readable ``key = value`` listing, one line per key, for logs."""
    lines = []
    for key in _all_keys(cfg):
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        lines.append(f"{key} = {obj!r}")
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    """``python -m common.config NAME [key=value ...]``: print the resolved config."""
    # Run as a script this file is ``__main__``, whose Config class is not the one config files import: use the
    # package module so isinstance checks see a single Config.
    from common import config as package

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m common.config NAME_OR_FILE [section.key=value ...]\n"
              f"configs: {', '.join(package.available_configs())}")
        return 0 if argv else 2
    try:
        print(package.format_config(package.load_config(argv[0], argv[1:])))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
