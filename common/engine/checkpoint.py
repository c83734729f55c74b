"""Checkpoints: read released SMPLer-X and ViTPose weights, write our own atomically.

Formats understood:

* **SMPLer-X** (released ``smpler_x_{s,b,l,h}32.pth.tar`` and training snapshots): ``{'epoch', 'network',
  'optimizer'}`` with network keys ``module.<name>`` (DDP). Legacy names are renamed as the original tester does
  (``backbone`` -> ``encoder``, ``body_rotation_net`` -> ``body_regressor``, ``hand_rotation_net`` ->
  ``hand_regressor``). Loading is **strict**: any missing, unexpected or mis-shaped key is an error naming them
  (the original loaded non-strictly and silently dropped mismatches).
* **ViTPose** (mmpose): ``{'state_dict': {'backbone.*', 'keypoint_head.*'}}``; only ``backbone.*`` is used, to
  initialise the encoder (task tokens keep their random init).
* Our checkpoints add ``'config'`` (the resolved config dict) and training state; their ``network`` keys keep the
  ``module.`` prefix so the original's tools can read them too.
"""

from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from common.errors import CheckpointError
from common.nets.vit import VIT_SIZES
from common.utils.io import atomic_open
from common.utils.safe_pickle import torch_safe_globals

log = logging.getLogger(__name__)

LEGACY_RENAMES = (("backbone", "encoder"), ("body_rotation_net", "body_regressor"),
                  ("hand_rotation_net", "hand_regressor"))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU without running code from it, with a clear error for missing,
    truncated, foreign or unsafe files.

    Only tensors, containers, numbers, strings and numpy arrays / scalars are read (``torch.load(weights_only=True)``
    widened by :func:`common.utils.safe_pickle.torch_safe_globals`): the released SMPLer-X and ViTPose files and our
    snapshots hold nothing else. A file that asks for any other Python object is refused, naming it, because
    unpickling it could run arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Released SMPLer-X weights go in pretrained_models/ "
                              "(see pretrained_models/README.md); or pass the path of a training snapshot")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy; "
                              "download or copy it again")
    try:
        with torch.serialization.safe_globals(torch_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=_can_mmap(path))
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path)
        if not unsafe and "GLOBAL" not in str(err):
            raise CheckpointError(f"cannot read checkpoint {path}: {_weights_only_reason(err)}. The file is truncated "
                                  "or not a PyTorch checkpoint; download or copy it again") from err
        raise CheckpointError(f"refusing to load checkpoint {path}: it holds Python objects that are not plain "
                              f"weights ({', '.join(unsafe) or _weights_only_reason(err)}), and unpickling them could "
                              "run code from the file. Released SMPLer-X / ViTPose checkpoints hold only tensors, "
                              "numbers and strings: download the file again from the official source, or re-save "
                              "only its weights (torch.save({'network': sd}, ...)) where you trust it") from None
    except Exception as err:  # torch.load raises many types on foreign or damaged bytes (IndexError, EOFError...)
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {_first_line(err)}. "
                              "The file is truncated or not a PyTorch checkpoint; download or copy it again") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict; expected a SMPLer-X "
                              "checkpoint ({'network': ...}) or a ViTPose one ({'state_dict': ...})")
    return obj


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else "no details"


def _weights_only_reason(err: BaseException) -> str:
    """The specific line of torch's long weights-only error (e.g. 'Unsupported operand 10')."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith(("WeightsUnpickler error", "Trying to load unsupported")):
            rest = ln.split(":", 1)[1].strip() if ln.startswith("WeightsUnpickler") else ln
            return rest or (lines[i + 1] if i + 1 < len(lines) else ln)
    return _first_line(err)


def _can_mmap(path: Path) -> bool:
    """Whether ``torch.load(mmap=True)`` applies: the zip format of ``torch.save`` (not the legacy tar/pickle one).
    Memory-mapping reads only the tensors that are used (a released H32 file also holds the optimiser state)."""
    import zipfile

    return zipfile.is_zipfile(path)


def _unsafe_globals(path: Path) -> list[str]:
    """The non-allow-listed globals a checkpoint asks for (read from its pickle opcodes, nothing executed)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - only used to word the message
        return []
    allowed = {f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', '')}" for g in torch_safe_globals()}
    return [g for g in found if g not in allowed][:5]


def network_state(ckpt: dict[str, Any], source: str = "checkpoint") -> OrderedDict[str, torch.Tensor]:
    """The network weights of a SMPLer-X checkpoint with bare keys (``encoder.blocks.0...``).

    ``module.`` prefixes are stripped, legacy module names renamed and ``smplx_layer.*`` dropped.
    """
    if "network" in ckpt:
        raw = ckpt["network"]
    elif "state_dict" in ckpt and any(k.startswith("backbone.") for k in ckpt["state_dict"]):
        raise CheckpointError(f"{source} is a ViTPose (mmpose) checkpoint, not a SMPLer-X one: use it as "
                              "paths.encoder_pretrained to initialise training, not as --ckpt")
    elif all(isinstance(v, torch.Tensor) for v in ckpt.values()) and any("encoder." in k for k in ckpt):
        raw = ckpt  # a bare state_dict
    else:
        raise CheckpointError(f"{source} is not a SMPLer-X checkpoint: it has no 'network' entry "
                              f"(top-level keys: {', '.join(list(ckpt)[:8])})")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in raw.items():
        k = key[len("module."):] if key.startswith("module.") else key
        for old, new in LEGACY_RENAMES:
            if k.startswith(old + "."):
                k = new + k[len(old):]
        if k.startswith("smplx_layer."):
            continue
        out[k] = value
    return out


def detect_encoder_size(state: dict[str, torch.Tensor], source: str = "checkpoint") -> str:
    """Model size ('s', 'b', 'l', 'h' or 'tiny') from the encoder width and depth of a bare state dict."""
    if "encoder.pos_embed" not in state:
        raise CheckpointError(f"{source} has no encoder.pos_embed: not a SMPLer-X network")
    width = state["encoder.pos_embed"].shape[-1]
    depth = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    for name, spec in VIT_SIZES.items():
        if spec.embed_dim == width and spec.depth == depth:
            return name
    known = ", ".join(f"{n}: width {s.embed_dim}, {s.depth} blocks" for n, s in VIT_SIZES.items())
    raise CheckpointError(f"{source}: encoder width {width} with {depth} blocks matches no known size ({known})")


def detect_model_config(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, Any]:
    """ModelConfig fields that the weights determine: encoder size, task tokens, head widths, hand-RoI upscale."""
    fields: dict[str, Any] = {"encoder_size": detect_encoder_size(state, source)}
    try:
        fields["num_task_tokens"] = int(state["encoder.task_tokens"].shape[1])
        fields["regressor_channels"] = int(state["body_regressor.body_conv.0.weight"].shape[0])
        fields["box_net_channels"] = int(state["box_net.deconv.0.weight"].shape[1])
    except KeyError as err:
        raise CheckpointError(f"{source} has no {err.args[0]}: not a SMPLer-X network") from None
    n_deconv = sum(1 for k in state if k.startswith("hand_roi_net.deconv.") and k.endswith(".weight")
                   and state[k].dim() == 4)
    fields["upscale"] = 2 ** n_deconv if n_deconv else 1
    return fields


def load_network_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly load a bare state dict into SMPLer-X; raise CheckpointError naming every mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        hint = ""
        if "encoder.pos_embed" in state and "encoder.pos_embed" in own:
            try:
                ck_size = detect_encoder_size(state, source)
                md_size = detect_encoder_size(own, "model")
                if ck_size != md_size:
                    hint = (f" The checkpoint is size '{ck_size}' but the model was built as '{md_size}': "
                            "use the matching config, or omit --config to take the size from the checkpoint.")
            except CheckpointError:
                pass
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shape)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise CheckpointError(f"{source} does not fit the model; {'; '.join(parts)}.{hint}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(f"{source} holds NaN or infinite weights in {', '.join(bad[:5])}{more}: the model would "
                              "only output NaN. It was saved from a diverged run or damaged; use an earlier snapshot "
                              "or download it again")
    model.load_state_dict(state, strict=True)


def load_vitpose_encoder(model: torch.nn.Module, path: str | Path) -> None:
    """Initialise ``model.encoder`` from a ViTPose checkpoint (mmpose ``state_dict`` with ``backbone.*`` keys).

    Every encoder weight except the task tokens must be present with the right shape.
    """
    ckpt = read_checkpoint(path)
    sd = ckpt.get("state_dict", ckpt)
    backbone = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointError(f"{path} has no 'backbone.*' weights: not a ViTPose checkpoint "
                              "(download vitpose_{small,base,large,huge}.pth, see pretrained_models/README.md)")
    own = model.encoder.state_dict()
    need = [k for k in own if k != "task_tokens"]
    missing = [k for k in need if k not in backbone]
    shape = [f"{k} {tuple(backbone[k].shape)} vs {tuple(own[k].shape)}" for k in need
             if k in backbone and backbone[k].shape != own[k].shape]
    if missing or shape:
        raise CheckpointError(f"ViTPose weights {path} do not fit the encoder (size mismatch? ViT-S/B/L/H use "
                              f"vitpose_small/base/large/huge): missing {missing[:5]}, wrong shape {shape[:5]}")
    extra = sorted(k for k in backbone if k not in own)
    if extra:
        log.info("ignoring %d ViTPose backbone keys not used by the encoder: %s", len(extra), extra[:5])
    model.encoder.load_state_dict({k: backbone[k] for k in need} | {"task_tokens": own["task_tokens"]}, strict=True)
    log.info("initialised the encoder from %s", path)


def network_checkpoint(model: torch.nn.Module) -> OrderedDict[str, torch.Tensor]:
    """``model.state_dict()`` in the released layout (``module.`` prefix), ready for ``{'network': ...}``."""
    return OrderedDict((f"module.{k}", v.detach().cpu()) for k, v in model.state_dict().items())


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint atomically: a temporary file in the same folder, fsync, then rename over ``path``.

    An interrupted save never leaves a truncated file at ``path`` (the previous one, if any, stays intact).
    """
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return path
