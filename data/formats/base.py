"""Shared pieces of the own-format loaders: the entry list, lazily loaded ground truth, the evaluation context.

Entries are the plain dicts of data/sample.py (``img_path``, ``img_shape``, ``bbox`` xywh px, ``lhand_bbox`` /
``rhand_bbox`` / ``face_bbox`` xyxy px or None, ``joint_img`` (137, 3), ``joint_cam`` (137, 3) m or None,
``joint_valid`` (137, 1) -- per sample here --, ``smplx_param`` dict or None, ``camera`` dict, ``dataset``,
``index``) with two optional extras used by test samples only:

* ``gt``: ``{name: array or LazyArray}`` added to the test sample's ``targets`` (e.g. ``smplx_mesh_cam``
  (10475, 3) m for EHF, read from its ``.ply`` when the sample is built);
* ``meta``: ``{name: array or str}`` added to the test sample's ``meta_info`` (e.g. AGORA's crop affine).

Values must have a fixed shape per dataset so that batches collate.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError


def read_json(path: str | Path, dataset: str) -> Any:
    """A JSON annotation file; InputError naming the file when it is unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable JSON ({type(err).__name__}: {err}); download {dataset} again") from err


def read_coco(path: str | Path, dataset: str) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """A COCO-style file -> ({image id: image}, [annotation, ...]); InputError naming the file otherwise."""
    db = read_json(path, dataset)
    try:
        return {int(im["id"]): im for im in db["images"]}, list(db["annotations"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: expected COCO json with 'images' (each with an 'id') and 'annotations' "
                         f"({type(err).__name__}: {err}); download {dataset} again") from err


# Functions an entry may hold (``expand``, LazyArray readers), by "module:qualname". The datalist cache stores the
# name and looks it up here on load, so a cache file can only refer to code of this project's loaders.
ENTRY_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def entry_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: register a module-level function that datalist entries may hold (see :data:`ENTRY_FUNCTIONS`)."""
    ENTRY_FUNCTIONS[f"{fn.__module__}:{fn.__qualname__}"] = fn
    return fn


def function_name(fn: Callable[..., Any], where: str = "") -> str:
    """The registered name of ``fn``; TypeError if it was not registered with :func:`entry_function`."""
    name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
    if ENTRY_FUNCTIONS.get(name) is not fn:
        raise TypeError(f"{where or 'entry'}: function {name} is not registered; decorate it with @entry_function "
                        "(data/formats/base.py) so that the datalist cache can refer to it by name")
    return name


@dataclass(frozen=True)
class LazyArray:
    """An array read when a sample is built (in a data-loader worker), not when the dataset is listed.

    ``reader(path, *args)`` must be a module-level function registered with :func:`entry_function` (the datalist
    cache stores its name).
    """

    reader: Callable[..., np.ndarray]
    path: str
    args: tuple = ()

    def load(self) -> np.ndarray:
        return self.reader(self.path, *self.args)


def materialize(extra: dict[str, Any] | None) -> dict[str, Any]:
    """``entry['gt']`` / ``entry['meta']`` with every :class:`LazyArray` read."""
    return {k: (v.load() if isinstance(v, LazyArray) else v) for k, v in (extra or {}).items()}


class EntryRecords:
    """The usable samples of one own-format dataset split: a list of entries plus why others were skipped."""

    def __init__(self, name: str, split: str, entries: Sequence[dict[str, Any]],
                 skipped: dict[str, int] | Counter | None = None, info: dict[str, Any] | None = None):
        self.name, self.split = name, split
        self.entries = list(entries)
        self.skipped: dict[str, int] = {k: int(v) for k, v in (skipped or {}).items() if v}
        self.info: dict[str, Any] = dict(info or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entry(i)

    def entry(self, i: int) -> dict[str, Any]:
        """Entry ``i`` (a shallow copy with fresh top-level arrays: the caller may modify them). An entry with an
        ``expand`` function (module-level, ``expand(entry) -> entry``) is completed here, in the data-loader worker,
        e.g. from per-sample annotation files that would take long to read all at once."""
        e = self.entries[int(i)]
        out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in e.items()}
        expand = out.pop("expand", None)
        return expand(out) if expand is not None else out

    def image_path(self, i: int) -> str:
        return str(self.entries[int(i)]["img_path"])

    def stats(self) -> dict[str, Any]:
        """Records, skipped samples by reason and loader facts (JSON-able)."""
        n = len(self)
        with_params = sum(e.get("smplx_param") is not None for e in self.entries)
        return {"name": self.name, "split": self.split, "records": n, "skipped": dict(self.skipped),
                "with_smplx": with_params, **self.info}


@dataclass
class EvalContext:
    """What a dataset's ``make_evaluator`` may need.

    assets: :class:`common.body_model.smplx_model.EvalAssets`; body_model: the model's neutral SMPL-X layer (for
    pseudo-GT meshes); body_model_dir: folder holding ``smplx/`` and ``smpl/``; out_dir: the result folder (AGORA
    writes its submission files there); device: where the model runs.
    """

    assets: Any
    body_model: Any
    body_model_dir: Path
    out_dir: Path
    device: Any = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
