"""Tools for HumanData annotation files (mmhuman3d ``.npz``).

    python -m main.humandata_tool validate FILE.npz [--name NAME] [--img-dir DIR] [--split train|test]
                                           [--sample-interval N] [--bbox-ratio R] [--body-model-dir DIR] [--json]
    python -m main.humandata_tool draw (FILE.npz | --dataset NAME [--data-root DIR]) [--split S] [--num 8]
                                       [--indices I ...] [--crop] [--out DIR] [--body-model-dir DIR]
    python -m main.humandata_tool cache --config NAME [--testset SET ...] [--no-test] [key=value ...]

``validate`` reads the file through the training reader (data/humandata.py) and prints its statistics: records,
keys with shapes, keypoint valid ratios, the parametric fit found, skipped rows and why. ``--name`` selects the
catalog row (image size, camera, quirks, image root); without it a file named as in the catalog
(``bedlam_train.npz``) gets its dataset's row, any other file stands alone. Exit code 0 when the file
gives at least one usable record, 2 with a one-line error otherwise.

``cache`` builds (or checks) the datalist cache of every training set of a config, and of its test set(s), so that
a training job finds them ready: ``main/slurm_train.sh`` runs it once before ``srun`` starts the ranks. It prints one
line per dataset (records, built or reused, seconds, cache size) and exits with 2 if any dataset failed.

``draw`` writes pictures of records (data/draw.py): the original image with the valid keypoints, the boxes and the
SMPL-X fit projected with the record's camera, or with ``--crop`` the augmented training crop with its targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import InputError, UserError


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable report of :meth:`data.humandata.HumanDataRecords.stats`."""
    kp, smplx = stats["keypoints"], stats["smplx"]
    lines = [
        f"file       {stats['file']}",
        f"dataset    {stats['name']} (split {stats['split']}, sample interval {stats['sample_interval']})",
        f"records    {stats['records']} usable of {stats['rows_sampled']} sampled rows ({stats['rows_in_file']} in "
        "the file)",
        "skipped    " + (", ".join(f"{reason}: {count}" for reason, count in stats["skipped"].items()) or "none"),
        "keys",
        *(f"  {key:<34} {desc}" for key, desc in stats["keys"].items()),
        f"keypoints  3D {kp['3d'] or 'none'}, 2D {kp['2d']}, mask {kp['mask']}, "
        f"compressed {'yes' if kp['compressed'] else 'no'}, mapping {kp['mapping']}",
        *(f"  valid ratio {key:<24} {_fmt_ratio(r)}" for key, r in kp["mask_valid_ratio"].items()),
        f"  137 set: joint_valid {_fmt_ratio(kp['joint_valid_137'])}, confidence > 0 at valid joints "
        f"{_fmt_ratio(kp['confidence_positive_ratio'])}",
    ]
    if smplx is None:
        lines.append("fit        none")
    else:
        notes = ", ".join(f"{k} {v}" for k, v in smplx.items()
                          if k not in ("source", "lhand_valid", "rhand_valid", "face_valid"))
        parts = ", ".join(f"{p} {'yes' if smplx[f'{p}_valid'] else 'no'}" for p in ("lhand", "rhand", "face"))
        lines.append(f"fit        {smplx['source']}: {parts}" + (f"; {notes}" if notes else ""))
    lines.append("boxes      " + ", ".join(f"{p} {_fmt_ratio(r)}" for p, r in stats["boxes_present"].items()))
    lines.append(f"camera     {stats['camera'] or 'none (per-sample 2D keypoints are the projection targets)'}")
    return "\n".join(lines)


def validate(args: argparse.Namespace) -> int:
    from data.catalog import find_spec_for_file, get_spec, resolve_img_dir
    from data.humandata import load_humandata

    # without --name, a file of the catalog (e.g. bedlam_train.npz) is read with its dataset's settings
    spec = get_spec(args.name) if args.name else find_spec_for_file(args.file)
    if spec is not None and spec.loader != "humandata":
        raise InputError(f"dataset {spec.name} is not a HumanData set (it has its own loader)")
    name = spec.name if spec is not None else Path(args.file).stem
    img_dir = Path(args.img_dir) if args.img_dir else (resolve_img_dir(spec) if spec else Path(args.file).parent)
    records = load_humandata(args.file, name=name, img_dir=img_dir, split=args.split,
                             sample_interval=args.sample_interval, bbox_ratio=args.bbox_ratio,
                             body_model_dir=args.body_model_dir)
    stats = records.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
        if len(records):
            first = records.entry(0)["img_path"]
            print(f"images     {img_dir} (first image {'found' if os.path.isfile(first) else 'NOT FOUND'}: {first})")
    if not len(records):
        why = ", ".join(f"{r} {c}" for r, c in stats["skipped"].items()) or "the file has no rows"
        raise InputError(f"{args.file}: no usable records ({why})")
    return 0


def _records(args: argparse.Namespace):
    """The entries to draw: a HumanData file (as ``validate`` reads it) or a catalog dataset's split."""
    from data.catalog import find_spec_for_file, get_spec, resolve_img_dir

    if args.dataset:
        spec = get_spec(args.dataset)
        if spec.loader == "own":
            from data.formats import load_own

            return spec.name, load_own(spec.name, args.split, data_root=args.data_root, sample_interval=1,
                                       body_model_dir=args.body_model_dir)
        from data.cache import load_dataset

        return spec.name, load_dataset(spec.name, args.split, data_root=args.data_root, sample_interval=1,
                                       body_model_dir=args.body_model_dir)
    if not args.file:
        raise InputError("give a HumanData FILE or --dataset NAME")
    from data.humandata import load_humandata

    spec = get_spec(args.name) if args.name else find_spec_for_file(args.file)
    name = spec.name if spec is not None else Path(args.file).stem
    img_dir = Path(args.img_dir) if args.img_dir else (resolve_img_dir(spec, args.data_root) if spec
                                                        else Path(args.file).parent)
    return name, load_humandata(args.file, name=name, img_dir=img_dir, split=args.split,
                                body_model_dir=args.body_model_dir)


def draw(args: argparse.Namespace) -> int:
    import numpy as np

    from common import paths
    from common.config import load_config
    from common.utils.io import save_image
    from data.draw import Layers, draw_entry, draw_training_sample

    name, records = _records(args)
    if not len(records):
        raise InputError(f"{name} ({args.split}) has no usable records")
    if args.indices:
        bad = [i for i in args.indices if not 0 <= i < len(records)]
        if bad:
            raise InputError(f"indices {bad} out of range: {name} ({args.split}) has {len(records)} records")
        picks = list(args.indices)
    else:
        rng = np.random.default_rng(args.seed)
        picks = sorted(rng.choice(len(records), size=min(args.num, len(records)), replace=False).tolist())
    bm_dir = Path(args.body_model_dir) if args.body_model_dir else paths.BODY_MODEL_DIR
    layers = Layers(bm_dir)
    if args.crop or any(records.entry(i).get("smplx_param") is not None for i in picks):
        from common.body_model import check_body_model_files

        check_body_model_files(bm_dir, only=["smplx/SMPLX_NEUTRAL.npz"])  # the standard message if absent
    out = Path(args.out)
    model_cfg = load_config("smpler_x_tiny").model  # crop / heat-map shapes are those of every size
    for i in picks:
        entry = records.entry(i)
        if args.crop:
            img, notes = draw_training_sample(entry, np.random.default_rng([args.seed, i]), model_cfg, layers)
        else:
            img, notes = draw_entry(entry, layers)
        path = out / f"{name}_{args.split}_{i}{'_crop' if args.crop else ''}.jpg"
        save_image(path, img)
        print(f"{path}: {', '.join(notes)}")
    return 0


def cache(args: argparse.Namespace) -> int:
    import time

    from common.config import load_config
    from data import cache_sync
    from data.datasets import load_records, train_set_names
    from main.test import parse_testset

    cfg = load_config(args.config, args.overrides)
    jobs = [(name, "train", True) for name in train_set_names(cfg)]
    if not args.no_test:
        jobs += [(*parse_testset(item), False) for item in (args.testset or [cfg.data.testset]) if item]
    failed = []
    for name, split, train in jobs:
        start, before = time.perf_counter(), len(cache_sync.BUILT)
        try:
            records = load_records(cfg, name, split, train, builder=True)
        except UserError as err:
            failed.append(name)
            print(f"{name:<20} {split:<6} FAILED: {' '.join(str(err).split())}")
            continue
        stores = [getattr(p, "store", None) for p in getattr(records, "parts", [records])]
        size = sum(s.nbytes() for s in stores if s is not None) / 2**20
        built = len(cache_sync.BUILT) > before
        state = "built" if built else "reused" if all(s is not None for s in stores) else "NOT CACHED (folder " \
            "not writable)"
        print(f"{name:<20} {split:<6} {len(records):>10} records  {time.perf_counter() - start:7.1f} s  "
              f"{size:9.1f} MB  {state}")
    if failed:
        raise InputError(f"{len(failed)} of {len(jobs)} dataset(s) failed: {', '.join(failed)} (see above)")
    return 0


# Sub-commands: name -> (handler, help).
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "validate": (validate, "load a HumanData file through the reader and print its statistics"),
    "draw": (draw, "draw samples with their keypoints, boxes and projected SMPL-X mesh to images"),
    "cache": (cache, "build the datalist caches of a config's training (and test) sets before training"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m main.humandata_tool", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help=COMMANDS["validate"][1])
    v.add_argument("file", help="HumanData .npz annotation file")
    v.add_argument("--name", default=None, help="catalog dataset name (image size, camera, quirks, image root)")
    v.add_argument("--img-dir", default=None, help="image root (default: the catalog's, else the file's folder)")
    v.add_argument("--split", default="train", help="split name recorded in the statistics (default: train)")
    v.add_argument("--sample-interval", type=int, default=1, help="keep every N-th row (default: 1, all rows)")
    v.add_argument("--bbox-ratio", type=float, default=1.2, help="box enlargement as in training (default: 1.2)")
    v.add_argument("--body-model-dir", default=None, help="SMPL-X folder for the BEDLAM hand means (optional)")
    v.add_argument("--json", action="store_true", help="print the statistics as JSON")
    d = sub.add_parser("draw", help=COMMANDS["draw"][1])
    d.add_argument("file", nargs="?", default=None, help="HumanData .npz annotation file (or use --dataset)")
    d.add_argument("--dataset", default=None, help="catalog dataset name instead of a file (any loader)")
    d.add_argument("--data-root", default=None, help="data root for --dataset (default: dataset/)")
    d.add_argument("--name", default=None, help="catalog dataset name of FILE (image size, camera, image root)")
    d.add_argument("--img-dir", default=None, help="image root of FILE (default: the catalog's, else its folder)")
    d.add_argument("--split", default="train", help="split (default: train)")
    d.add_argument("--num", type=int, default=8, help="number of random records to draw (default 8)")
    d.add_argument("--indices", type=int, nargs="+", default=None, help="draw these records instead")
    d.add_argument("--seed", type=int, default=0, help="record choice and augmentation seed")
    d.add_argument("--crop", action="store_true",
                   help="draw the augmented training crop with its targets instead of the original image")
    d.add_argument("--out", default="output/draw", help="output folder (default: output/draw)")
    d.add_argument("--body-model-dir", default=None, help="folder holding smplx/ (default: the standard path)")
    c = sub.add_parser("cache", help=COMMANDS["cache"][1])
    c.add_argument("--config", required=True, help="config name or file, as for python -m main.train")
    c.add_argument("--testset", nargs="+", default=None,
                   help="test set(s) NAME or NAME:split (default: the config's data.testset)")
    c.add_argument("--no-test", action="store_true", help="training sets only")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. paths.data_root=...")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command][0]
    try:
        return handler(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line, whatever the message
        return 2


if __name__ == "__main__":
    sys.exit(main())
