"""Single-image inference with a SMPLer-X checkpoint.

    python -m main.inference --ckpt pretrained_models/smpler_x_s32.pth.tar --input photo.jpg \\
        --bbox 120,40,200,480 --output results/ [--bbox ...] [--body-model-dir DIR] [--device cpu|cuda]

Each ``--bbox X,Y,W,H`` (pixels; repeat for several people) is one person; without ``--bbox`` the whole image is
the box (person detection comes with video inference). Writes, as the original demo, for person k:

* ``OUTPUT/smplx/<stem>_<k>.npz``: global_orient (1,3), body_pose (21,3), left/right_hand_pose (15,3), jaw_pose
  (1,3), leye/reye_pose (1,3, zeros), betas (1,10), expression (1,10), transl (1,3); axis-angle, metres, SMPL-X
  neutral with ``flat_hand_mean=False``; fed to the SMPL-X layer they reproduce the saved mesh;
* ``OUTPUT/meta/<stem>_<k>.json``: focal, princpt (px of the input image), bbox (the processed crop box, xywh),
  bbox_input (the given box), img_path;
* ``OUTPUT/mesh/<stem>_<k>.obj``: the mesh in the camera frame (m), project with focal / princpt;
* ``OUTPUT/img/<stem>.jpg`` (unless ``--no-vis``): the image with projected mesh vertices and boxes drawn.

Every problem (unreadable image, bad box, wrong checkpoint, missing body model) is reported in one line with exit
code 2 before anything is written; every file is written atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from common.errors import UserError

log = logging.getLogger("smplerx.inference")


def add_model_arguments(p: argparse.ArgumentParser, input_help: str) -> None:
    """The arguments every inference command shares: checkpoint, input, output, body model, config, device."""
    p.add_argument("--ckpt", required=True,
                   help="SMPLer-X checkpoint: a released model by name (smpler_x_s32, _b32, _l32, _h32: from "
                        "pretrained_models/ or the Hugging Face cache, downloaded once) or a file (.pth.tar)")
    p.add_argument("--input", required=True, help=input_help)
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--body-model-dir", default=None,
                   help="folder holding smplx/ (default: common/utils/human_model_files)")
    p.add_argument("--config", default=None,
                   help="config name or file (default: the checkpoint's own, or its size detected from the weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="fp32 (default, exact), bf16 (CPU with AVX-512 BF16, or CUDA) or int8 (CPU): faster, outputs "
                        "differ slightly (measured in docs/benchmarks.md)")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help=argparse.SUPPRESS)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m main.inference", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, "image file")
    p.add_argument("--bbox", action="append", default=[], metavar="X,Y,W,H",
                   help="person box in pixels; repeat for several people; default: the whole image")
    p.add_argument("--no-vis", action="store_true", help="do not write the overlay image")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.upscale=4")
    argv = list(sys.argv[1:] if argv is None else argv)
    # a box starting left of the image ("--bbox -20,10,80,200") would otherwise be read as an unknown option
    for i in range(len(argv) - 1):
        if argv[i] == "--bbox" and argv[i + 1].startswith("-"):
            argv[i: i + 2] = [f"--bbox={argv[i + 1]}", ""]
    return p.parse_args([a for a in argv if a != ""])


def run(args: argparse.Namespace) -> list[Path]:
    import torch

    from common.engine.predictor import Predictor, load_model, resolve_device
    from common.utils.image import check_person_box, load_image, parse_bbox
    from common.utils.io import check_output_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    # Validate every input before loading the model or writing anything.
    image = load_image(args.input)
    h, w = image.shape[:2]
    boxes = [parse_bbox(b) for b in args.bbox] or [(0.0, 0.0, float(w), float(h))]
    for box in boxes:
        check_person_box(box, w, h)
    check_output_dir(args.output, ("smplx", "meta", "mesh", "img"))
    device = resolve_device(args.device)
    model, cfg = load_model(args.ckpt, args.config, tuple(args.overrides), args.body_model_dir, device,
                            args.precision)
    results = Predictor(model, cfg)(image, boxes)
    return write_results(Path(args.output), Path(args.input), image, results, model.body_model.faces,
                         vis=not args.no_vis)


def write_results(out_dir: Path, img_path: Path, image: np.ndarray, results, faces: np.ndarray,
                  vis: bool = True) -> list[Path]:
    """Write the npz / json / obj (and overlay) files of one image; returns the written paths."""
    from common.utils.io import save_image, save_json, save_npz, save_obj

    stem = img_path.stem
    written = []
    for k, r in enumerate(results):
        written.append(save_npz(out_dir / "smplx" / f"{stem}_{k}.npz", **r.params))
        meta = {"focal": list(r.focal), "princpt": list(r.princpt), "bbox": r.bbox.tolist(),
                "bbox_input": r.bbox_input.tolist(), "bbox_id": k, "img_path": str(img_path)}
        written.append(save_json(out_dir / "meta" / f"{stem}_{k}.json", meta))
        written.append(save_obj(out_dir / "mesh" / f"{stem}_{k}.obj", r.vertices, faces))
    if vis:
        written.append(save_image(out_dir / "img" / f"{stem}.jpg", draw_overlay(image, results)))
    return written


def draw_overlay(image: np.ndarray, results) -> np.ndarray:
    """The image with each person's projected mesh vertices (dots) and given box (red), RGB uint8."""
    import cv2

    from common.engine.predictor import project

    vis = np.clip(image, 0, 255).astype(np.uint8).copy()
    dots = vis.copy()
    for r in results:
        uv = project(r.vertices[::4], r.focal, r.princpt)
        for x, y in np.round(uv).astype(np.int64):
            if 0 <= x < vis.shape[1] and 0 <= y < vis.shape[0]:
                cv2.circle(dots, (int(x), int(y)), 1, (80, 160, 255), -1)
    vis = cv2.addWeighted(vis, 0.2, dots, 0.8, 0)
    for r in results:
        x, y, w, h = r.bbox_input
        cv2.rectangle(vis, (int(x), int(y)), (int(x + w), int(y + h)), (255, 0, 0), 2)
    return vis


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        written = run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n = sum(1 for p in written if p.suffix == ".npz")
    print(f"wrote {n} person(s) to {args.output}: " + ", ".join(sorted({p.parent.name for p in written})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
