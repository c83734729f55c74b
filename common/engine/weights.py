"""Weights by name: released SMPLer-X checkpoints through the Hugging Face hub cache, person detectors through
torchvision's weights API and cache.

``resolve_checkpoint("smpler_x_s32")`` returns, in this order:

1. ``pretrained_models/smpler_x_s32.pth.tar`` if present (the original's place; ``SMPLERX_PRETRAINED_DIR``);
2. the file in the Hugging Face cache (``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``), from the first
   repository of :data:`RELEASED_CHECKPOINTS` that has it, downloaded there first unless offline (``HF_HUB_OFFLINE=1``
   or ``SMPLERX_OFFLINE=1``). Downloads are huggingface_hub's own: resumable, atomic, shared with every other tool
   that uses the cache.

A path (anything that is not a known name) is returned as it is. Offline or unreachable, the error is one line
naming the file, where to put it and the command that fetches it.

``resolve_detector_weights("fasterrcnn_mobilenet_v3_large_fpn")``: the COCO weights of a torchvision detector, from
``pretrained_models/`` or torchvision's cache (``$TORCH_HOME/hub/checkpoints``, the folder and file name torchvision's
``weights.get_state_dict()`` uses), downloaded there with torch's hub downloader (hash-checked) unless offline. The
file is then read with ``torch.load(weights_only=True)`` by the caller, never with full unpickling.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from common import paths
from common.errors import CheckpointError

log = logging.getLogger(__name__)

AUTHORS_REPO = "caizhongang/SMPLer-X"  # the authors' Hugging Face repository
MIRROR_REPO = "camenduru/SMPLer-X"  # the mirror the authors point users to


@dataclass(frozen=True)
class Released:
    """A released checkpoint: its file name and the hub repositories that host it, tried in order."""

    filename: str
    repos: tuple[str, ...]
    note: str


# One table, one place: name -> where the file lives. H32 is in the authors' repository; S32 / B32 / L32 also in
# the mirror. The files hold the network and the optimiser state (H32: 7.94 GB, S32: 384 MB); loading maps them and
# reads only the network's tensors.
RELEASED_CHECKPOINTS: dict[str, Released] = {
    "smpler_x_s32": Released("smpler_x_s32.pth.tar", (AUTHORS_REPO, MIRROR_REPO), "ViT-S, 32 datasets"),
    "smpler_x_b32": Released("smpler_x_b32.pth.tar", (AUTHORS_REPO, MIRROR_REPO), "ViT-B, 32 datasets"),
    "smpler_x_l32": Released("smpler_x_l32.pth.tar", (AUTHORS_REPO, MIRROR_REPO), "ViT-L, 32 datasets"),
    "smpler_x_h32": Released("smpler_x_h32.pth.tar", (AUTHORS_REPO, MIRROR_REPO), "ViT-H, 32 datasets"),
    "smpler_x_h32_correct": Released("smpler_x_h32_correct.pth.tar", (AUTHORS_REPO,),
                                     "ViT-H, the authors' H32* with fixed camera estimation on 3DPW-like data"),
}


def offline() -> bool:
    """True when downloads are off: ``HF_HUB_OFFLINE`` (Hugging Face's switch) or ``SMPLERX_OFFLINE`` set to 1/true."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "SMPLERX_OFFLINE"))


def checkpoint_name(text: str | Path) -> str | None:
    """The released-checkpoint name ``text`` refers to ('smpler_x_s32', also with '.pth.tar'), or None."""
    name = Path(str(text)).name.removesuffix(".pth.tar")
    return name if name in RELEASED_CHECKPOINTS and "/" not in str(text) else None


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint path for ``--ckpt``: a released name resolved as in the module docstring, else the path itself
    (its existence is checked by the loader, which names it)."""
    name = checkpoint_name(name_or_path)
    if name is None:
        return Path(name_or_path)
    rel = RELEASED_CHECKPOINTS[name]
    local = paths.PRETRAINED_DIR / rel.filename
    found = cached_checkpoint(name)  # what is here already, from any source, before any network access
    if found is not None:
        return found
    try:
        import huggingface_hub as hub
        from huggingface_hub import errors as hub_errors
    except ImportError:  # pragma: no cover - a requirement; kept for installs without it
        raise CheckpointError(f"checkpoint {name}: {local} not found and huggingface_hub is not installed; "
                              f"{_fetch_hint(name, rel, local)}") from None
    if offline():
        raise CheckpointError(f"checkpoint {name} ({rel.filename}) is not in pretrained_models/ nor in the Hugging "
                              f"Face cache {hub.constants.HF_HUB_CACHE}, and downloads are off (HF_HUB_OFFLINE / "
                              f"SMPLERX_OFFLINE); {_fetch_hint(name, rel, local)}")
    problems = []
    for repo in rel.repos:
        log.info("fetching %s from https://huggingface.co/%s into the Hugging Face cache (HF_HUB_OFFLINE=1 to never "
                 "download)", rel.filename, repo)
        try:
            return Path(hub.hf_hub_download(repo, rel.filename))
        except hub_errors.LocalEntryNotFoundError:  # the hub could not be reached (and the cache has no copy)
            problems.append(f"{repo}: huggingface.co unreachable")
            break  # the next repository would fail the same way
        except (hub_errors.EntryNotFoundError, hub_errors.RepositoryNotFoundError) as err:
            problems.append(f"{repo}: {type(err).__name__}")  # not there: try the next repository
        except (hub_errors.HfHubHTTPError, OSError, ValueError) as err:  # proxy, permissions, disk full...
            problems.append(f"{repo}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            break
    raise CheckpointError(f"checkpoint {name} ({rel.filename}) could not be downloaded ({'; '.join(problems)}); "
                          f"{_fetch_hint(name, rel, local)}")


def cached_checkpoint(name: str) -> Path | None:
    """The released checkpoint ``name`` if it is on this machine already (pretrained_models/ or the Hugging Face
    cache), else None; never downloads."""
    rel = RELEASED_CHECKPOINTS[name]
    local = paths.PRETRAINED_DIR / rel.filename
    if local.is_file():
        return local
    try:
        import huggingface_hub as hub
    except ImportError:  # pragma: no cover
        return None
    for repo in rel.repos:
        cached = hub.try_to_load_from_cache(repo, rel.filename)
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
    return None


def _fetch_hint(name: str, rel: Released, local: Path) -> str:
    repo = rel.repos[0]
    return (f"put {rel.filename} into {local.parent}/ (or its path after --ckpt), or fetch it with "
            f"`hf download {repo} {rel.filename} --local-dir {local.parent}` on a machine with internet "
            f"(https://huggingface.co/{repo}/resolve/main/{rel.filename})")


# ---------------------------------------------------------------------------------------------------- detectors
@dataclass(frozen=True)
class DetectorWeights:
    """Where a torchvision detector's COCO weights come from: builder name, weights enum member, file and URL."""

    arch: str
    url: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def detector_weights_info(arch: str) -> DetectorWeights:
    """The COCO weights torchvision publishes for detector ``arch`` (its weights enum's default)."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"unknown torchvision detector {arch!r}: {err}") from None
    return DetectorWeights(arch, weights.url)


def resolve_detector_weights(arch: str) -> Path:
    """Path of detector ``arch``'s COCO weights: ``pretrained_models/<file>``, else torchvision's cache
    (``torch.hub.get_dir()/checkpoints/<file>``), downloaded there (hash-checked) unless offline."""
    import torch

    info = detector_weights_info(arch)
    local = paths.PRETRAINED_DIR / info.filename
    if local.is_file():
        return local
    cache = Path(torch.hub.get_dir()) / "checkpoints" / info.filename
    if cache.is_file():
        return cache
    hint = (f"download {info.url} into {cache.parent}/ or {local.parent}/ (e.g. `python -c \"import torchvision; "
            f"torchvision.models.get_model_weights('{arch}').DEFAULT.get_state_dict()\"` on a machine with "
            "internet), or give the people's boxes with --boxes FILE / --detector whole")
    if offline():
        raise CheckpointError(f"person detector weights {info.filename} are not in {local.parent} nor in "
                              f"torchvision's cache {cache.parent}, and downloads are off; {hint}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        # torchvision's file names end in the first hex digits of the file's sha256, which torch checks
        prefix = info.filename.rsplit("-", 1)[-1].split(".")[0]
        torch.hub.download_url_to_file(info.url, str(cache), hash_prefix=prefix if len(prefix) >= 6 else None,
                                       progress=True)
    except Exception as err:  # noqa: BLE001 - URLError, timeout, hash mismatch: all get the same advice
        raise CheckpointError(f"person detector weights {info.filename} could not be downloaded "
                              f"({type(err).__name__}: {err}); {hint}") from None
    return cache


def main(argv: list[str] | None = None) -> int:
    """``python -m common.engine.weights NAME ...``: resolve (and fetch, where allowed) released checkpoints or
    detector weights and print their paths; run it on a machine with internet before jobs on nodes without."""
    import argparse
    import sys

    from common.engine.detector import DETECTOR_ARCHS

    p = argparse.ArgumentParser(prog="python -m common.engine.weights", description=main.__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", metavar="NAME", help=f"checkpoint names ({', '.join(RELEASED_CHECKPOINTS)}) "
                                                             f"or detectors ({', '.join(DETECTOR_ARCHS)})")
    args = p.parse_args(argv)
    code = 0
    for name in args.names:
        try:
            if checkpoint_name(name) is None and name not in DETECTOR_ARCHS:
                raise CheckpointError(f"unknown name {name!r}: checkpoints {', '.join(RELEASED_CHECKPOINTS)}; "
                                      f"detectors {', '.join(DETECTOR_ARCHS)}")
            path = resolve_detector_weights(name) if name in DETECTOR_ARCHS else resolve_checkpoint(name)
            print(f"{name}: {path}")
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            code = 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
