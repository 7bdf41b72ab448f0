"""Tensor helpers shared by the learners (PPO and the occupancy regulariser)."""

from __future__ import annotations

from typing import Any

import torch


def cpu_copy(obj: Any) -> Any:
    """Deep copy of a (nested) state dict with every tensor on the CPU (what checkpoints store)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(v) for v in obj]
    return obj
