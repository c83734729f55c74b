"""Optimiser, learning-rate schedule and the original's fine-tuning freezes (facts sheet section 5)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from common.config import TrainConfig

# what each fine_tune mode leaves trainable, by top-level module (the original's names)
NECK = ("box_net", "hand_roi_net")
HEADS = ("body_position_net", "body_regressor", "hand_position_net", "hand_regressor", "face_regressor")
TRAINABLE = {"": None, "backbone": ("encoder",), "neck_and_head": NECK + HEADS, "head": HEADS}


def apply_fine_tune(model: nn.Module, mode: str) -> None:
    """Freeze every top-level module not trained in ``mode`` ('' trains all)."""
    keep = TRAINABLE[mode]
    if keep is None:
        return
    for name, module in model.named_children():
        for p in module.parameters():
            p.requires_grad_(name in keep)


def _no_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim <= 1 or name.endswith((".bias", "pos_embed", "task_tokens"))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the original: no weight decay, one group) or AdamW with optional layer-wise LR decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam([p for _, p in named], lr=cfg.lr)
    depth = len(getattr(getattr(model, "encoder", None), "blocks", []))
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    for name, p in named:
        scale = 1.0
        if cfg.layer_decay != 1.0 and name.startswith("encoder."):
            layer = int(name.split(".")[2]) + 1 if name.startswith("encoder.blocks.") else (
                depth + 1 if name.startswith("encoder.last_norm") else 0)
            scale = cfg.layer_decay ** (depth + 1 - layer)
        wd = 0.0 if _no_decay(name, p) else cfg.weight_decay
        groups.setdefault((scale, wd), []).append(p)
    param_groups = [{"params": ps, "lr": cfg.lr * s, "lr_scale": s, "weight_decay": wd}
                    for (s, wd), ps in sorted(groups.items())]
    return torch.optim.AdamW(param_groups, lr=cfg.lr)


def lr_factor(step: int, total: int, warmup: int, base_lr: float, min_lr: float) -> float:
    """Multiplier of base_lr at iteration ``step``: linear warm-up, then cosine from base_lr to min_lr over
    ``total`` iterations (torch's CosineAnnealingLR closed form, stepped every iteration as the original)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(step, total)
    lr = min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t / max(total, 1))) / 2
    return lr / base_lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    total_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule; its state (the iteration) is saved in checkpoints so resuming continues it."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_iters, cfg.warmup_iters, cfg.lr, cfg.min_lr))
