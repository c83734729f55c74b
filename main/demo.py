"""The main job on the bundled default: single-image inference end to end.

    python -m main.demo [--output output/demo]

1. Body model: the real SMPL-X files from ``common/utils/human_model_files/`` if present, else licence-free
   synthetic stand-ins in the official format, written to ``OUTPUT/synthetic_human_model_files/``.
2. Weights: ``pretrained_models/smpler_x_s32.pth.tar`` if present, else an official-format checkpoint with random
   weights (``OUTPUT/smpler_x_s32_random.pth.tar``).
3. Image: ``demo/images/*`` if there are any (whole-image box), else a rendered picture of a posed body.
4. Runs ``python -m main.inference`` on it and writes ``OUTPUT/result/{smplx,meta,mesh,img}``.

With stand-ins the outputs are well-formed but **not meaningful**: the network's weights are random, so the mesh
does not follow the person in the image. The same command uses the real files as soon as they are in place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m main.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=str(paths.OUTPUT_DIR / "demo"), help="output folder (default: output/demo)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stand_ins = []

    from common.body_model import SMPLXLayer, check_body_model_files, write_synthetic_body_models
    from common.errors import BodyModelFilesMissing

    try:
        check_body_model_files(paths.BODY_MODEL_DIR)
        bm_dir = paths.BODY_MODEL_DIR
        print(f"[demo] body model: real SMPL-X files in {bm_dir}")
    except BodyModelFilesMissing:
        bm_dir = out / "synthetic_human_model_files"
        if not (bm_dir / "smplx" / "SMPLX_NEUTRAL.npz").is_file():
            write_synthetic_body_models(bm_dir, smpl=False)
        stand_ins.append("body model")
        print(f"[demo] body model: no real SMPL-X files in {paths.BODY_MODEL_DIR}; using SYNTHETIC stand-ins "
              f"in {bm_dir}")

    ckpt = paths.PRETRAINED_DIR / "smpler_x_s32.pth.tar"
    if ckpt.is_file():
        print(f"[demo] weights: {ckpt}")
    else:
        from common.engine.demo_assets import write_random_checkpoint

        ckpt = out / "smpler_x_s32_random.pth.tar"
        if not ckpt.is_file():
            write_random_checkpoint(ckpt, size="s", seed=0)
        stand_ins.append("network weights")
        print(f"[demo] weights: no {paths.PRETRAINED_DIR / 'smpler_x_s32.pth.tar'}; using RANDOM weights in {ckpt}")

    images = sorted(q for q in (paths.REPO_ROOT / "demo" / "images").glob("*")
                    if q.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
    from main import inference

    jobs: list[list[str]] = []
    if images:
        jobs = [["--input", str(q)] for q in images]
    else:
        from common.engine.demo_assets import render_person_image

        img_path, box = render_person_image(SMPLXLayer(bm_dir), out / "person.png")
        jobs = [["--input", str(img_path), "--bbox", ",".join(f"{v:.1f}" for v in box)]]
        print(f"[demo] image: rendered {img_path} (person box {', '.join(f'{v:.0f}' for v in box)})")
    for job in jobs:
        code = inference.main([*job, "--ckpt", str(ckpt), "--output", str(out / "result"),
                               "--body-model-dir", str(bm_dir), "--device", args.device])
        if code:
            return code
    if stand_ins:
        print(f"[demo] NOTE: {' and '.join(stand_ins)} are stand-ins, so the mesh is NOT meaningful (random weights "
              "do not estimate the pose). Put the real files in place (README, 'Real weights and body models') "
              "and run the same command.")
    print(f"[demo] done: see {out / 'result'} (smplx/*.npz parameters, meta/*.json cameras, mesh/*.obj, img/*.jpg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
