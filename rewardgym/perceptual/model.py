"""Perceptual reward model from a few demonstrations (Sermanet, Xu & Levine 2016).

Given demonstration frames, :meth:`PerceptualModel.fit`

1. computes per-frame features (:mod:`rewardgym.perceptual.features`: a time-contrastive
   encoder trained on the demos, or a pretrained torchvision network) and standardises
   them over all demo frames;
2. discovers the task's intermediate steps without labels: each demo is cut into ``K``
   contiguous segments that minimise the summed within-segment feature variance
   (:func:`segment`; the paper searches split points recursively, we solve the same
   objective exactly by dynamic programming);
3. selects, for each step, the ``M`` features that best separate that step's frames from
   the other steps' frames (:func:`select_features`: the paper's ratio of between-step
   distance to within-step spread);
4. trains one classifier per step on its selected features (logistic regression, class
   balanced; the paper uses a per-feature Gaussian model — a logistic model gives
   calibrated probabilities at the same cost);
5. defines progress ``φ(frame) = Σ_k (k/K)·p_k / max(1, Σ_k p_k)`` ∈ [0, 1], where ``p_k``
   is step k's classifier probability: ~k/K inside step k, ~1 at the goal, ~0 for frames
   unlike any demo step. The reward is φ of the new frame (Sermanet et al. reward progress
   through the steps); φ also serves as a potential Φ for shaping.

Files are written with :meth:`save` (``.pt``, atomic) and used as ``reward="model.pt"``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from rewardgym.files import atomic_write_bytes
from rewardgym.envs.frames import FrameSpec
from rewardgym.perceptual.demos import DemoError, Demos
from rewardgym.perceptual.features import (PretrainedFeatures, TCNEncoder, TorchScriptFeatures, embed, to_tensor,
                                           train_tcn)

MODEL_FORMAT = 2  # 2: arrays stored as tensors, so loading never unpickles code (weights_only)
_ARRAYS = ("mean", "std", "selected", "coef", "bias")  # the model's numpy fields, stored as tensors


def segment(features: np.ndarray, k: int, min_length: int = 2) -> np.ndarray:
    """Split a sequence into ``k`` contiguous segments of minimum total within-segment variance.

    Args:
        features: ``(T, D)`` features of one demonstration, in time order.
        k: number of segments.
        min_length: frames per segment at least.

    Returns:
        ``(T,)`` int segment index of each frame (0 .. k-1, non-decreasing).
    """
    t = len(features)
    if t < k * min_length:
        raise ValueError(f"a demonstration of {t} frames cannot be cut into {k} steps of at least {min_length} frames")
    x = np.asarray(features, dtype=np.float64)
    s1 = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])  # (T+1, D)
    s2 = np.concatenate([[0.0], np.cumsum(np.sum(x * x, axis=1))])  # (T+1,)
    n = np.arange(t + 1)
    length = n[None, :] - n[:, None]  # length[i, j] = j - i
    dot = s1 @ s1.T
    norm = np.diag(dot)
    with np.errstate(divide="ignore", invalid="ignore"):
        # SSE of segment [i, j) = Σ|x|² − |Σx|²/n, for every (i, j) at once.
        cost = (s2[None, :] - s2[:, None]) - (norm[None, :] + norm[:, None] - 2 * dot) / length
    cost[length < min_length] = np.inf
    best = np.full((k + 1, t + 1), np.inf)
    arg = np.zeros((k + 1, t + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for seg in range(1, k + 1):
        total = best[seg - 1][:, None] + cost  # (i, j): best split ending a segment at j, starting at i
        arg[seg] = np.argmin(total, axis=0)
        best[seg] = total[arg[seg], np.arange(t + 1)]
    labels = np.zeros(t, dtype=np.int64)
    end = t
    for seg in range(k, 0, -1):
        start = arg[seg, end]
        labels[start:end] = seg - 1
        end = start
    return labels


def select_features(features: np.ndarray, labels: np.ndarray, k: int, m: int) -> np.ndarray:
    """Per step, the ``m`` features with the largest ``|μ_in − μ_out| / (σ_in + σ_out)``.

    Args:
        features: ``(N, D)`` standardised features of all demo frames.
        labels: ``(N,)`` step index of each frame.
        k: number of steps; m: features kept per step.

    Returns:
        ``(k, m)`` feature indices.
    """
    chosen = []
    for step in range(k):
        inside, outside = features[labels == step], features[labels != step]
        score = np.abs(inside.mean(0) - outside.mean(0)) / (inside.std(0) + outside.std(0) + 1e-6)
        chosen.append(np.argsort(-score)[:m])
    return np.stack(chosen)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """Class-balanced L2-regularised logistic regression by L-BFGS: returns ``(w (M,), b)``."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    pos = max(float(yt.sum()), 1.0)
    neg = max(float(len(yt) - yt.sum()), 1.0)
    weight = torch.where(yt > 0, 0.5 / pos, 0.5 / neg)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = xt @ w + b
        loss = (weight * nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none")).sum()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy().astype(np.float32), float(b.detach())


def _spearman(values: np.ndarray) -> float:
    """Rank correlation of ``values`` with their time index (1 = strictly increasing)."""
    if len(values) < 3 or np.ptp(values) == 0:
        return 0.0
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)
    time = np.arange(len(values), dtype=np.float64)
    return float(np.corrcoef(ranks, time)[0, 1])


@dataclass
class PerceptualModel:
    """A fitted perceptual reward model (see the module docstring).

    Attributes:
        task: the task id the demos came from.
        frame_spec: camera and frame size the model reads.
        encoder: ``(B, 3, H, W) -> (B, D)`` feature network (eval mode).
        encoder_config: how to rebuild ``encoder`` (``{"kind": "tcn", "dim": D}``,
            ``{"kind": "pretrained", "arch", "weights", "input_size"}`` or
            ``{"kind": "torchscript", "weights", "input_size"}``; weights files are referenced by path).
        mean, std: ``(D,)`` feature standardisation.
        selected: ``(K, M)`` feature indices per step.
        coef: ``(K, M)``; bias: ``(K,)`` per-step logistic classifiers.
        report: fit diagnostics (segment lengths, progress monotonicity on demos).
    """

    task: str
    frame_spec: FrameSpec
    encoder: nn.Module
    encoder_config: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    selected: np.ndarray
    coef: np.ndarray
    bias: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.selected.shape[0])

    # -- fitting --------------------------------------------------------------
    @classmethod
    def fit(cls, demos: Demos, steps: int = 3, features_per_step: int = 8, encoder: str = "tcn",
            arch: str | None = None, weights: str | Path | None = None, input_size: int = 224,
            tcn_dim: int = 32, tcn_iterations: int = 600, seed: int = 0,
            on_progress: Callable[[str], None] | None = None) -> "PerceptualModel":
        """Fit the model on ``demos`` (see the module docstring for the stages).

        Args:
            demos: successful demonstrations of one task.
            steps: ``K``, intermediate steps to discover.
            features_per_step: ``M``, features each step's classifier reads.
            encoder: ``"tcn"`` (trained on the demos), ``"pretrained"`` (torchvision ``arch`` +
                state-dict ``weights``) or ``"torchscript"`` (``weights`` = a TorchScript file).
            input_size: pretrained networks' input side, pixels.

        Raises:
            DemoError: too few demos or frames for ``steps``.
            ValueError: bad encoder options or weights.
        """
        say = on_progress or (lambda _msg: None)
        if steps < 2:
            raise DemoError(f"steps must be at least 2 (got {steps})")
        if demos.num_episodes < 2:
            raise DemoError(f"{demos.task}: {demos.num_episodes} demonstration(s) are too few to discover "
                            f"{steps} steps; collect at least 2 (the paper uses 10 or fewer)")
        episodes = demos.episodes()
        shortest = min(len(ix) for ix in episodes)
        if shortest < 2 * steps:
            raise DemoError(f"{demos.task}: the shortest demonstration has {shortest} frames, too few for "
                            f"{steps} steps of at least 2 frames; use fewer steps")
        if encoder == "tcn":
            say(f"training the time-contrastive encoder on {len(demos.frames)} frames")
            net: nn.Module = train_tcn(demos.frames, demos.episode, dim=tcn_dim, iterations=tcn_iterations, seed=seed,
                                       on_progress=lambda it, loss: say(f"  tcn iteration {it}: loss {loss:.3f}"))
            config: dict[str, Any] = {"kind": "tcn", "dim": tcn_dim}
        elif encoder == "pretrained":
            if not arch or not weights:
                raise ValueError("encoder='pretrained' needs arch= (a torchvision model name) and weights= (a file)")
            net = PretrainedFeatures(arch, weights, input_size)
            config = {"kind": "pretrained", "arch": arch, "weights": str(weights), "input_size": int(input_size)}
        elif encoder == "torchscript":
            if not weights:
                raise ValueError("encoder='torchscript' needs weights= (a file written by torch.jit.save)")
            net = TorchScriptFeatures(weights, input_size)
            config = {"kind": "torchscript", "weights": str(weights), "input_size": int(input_size)}
        else:
            raise ValueError(f"encoder must be 'tcn', 'pretrained' or 'torchscript', got {encoder!r}")
        features = embed(net, demos.frames)
        mean, std = features.mean(0), features.std(0) + 1e-6
        z = (features - mean) / std
        say(f"segmenting {len(episodes)} demonstrations into {steps} steps")
        labels = np.zeros(len(z), dtype=np.int64)
        for ix in episodes:
            labels[ix] = segment(z[ix], steps)
        m = min(features_per_step, z.shape[1])
        selected = select_features(z, labels, steps, m)
        coef, bias = np.zeros((steps, m), np.float32), np.zeros(steps, np.float32)
        for step in range(steps):
            coef[step], bias[step] = _logistic(z[:, selected[step]], (labels == step).astype(np.float64))
        model = cls(demos.task, demos.frame_spec, net, config, mean.astype(np.float32), std.astype(np.float32),
                    selected, coef, bias)
        model.report = {"demos": demos.num_episodes, "frames": int(len(demos.frames)),
                        "step_lengths": [[int(np.sum(labels[ix] == s)) for s in range(steps)] for ix in episodes],
                        **model.evaluate(demos)}
        return model

    def evaluate(self, demos: Demos) -> dict[str, float]:
        """How well progress tracks time on ``demos``: mean Spearman ρ, first and last frame progress."""
        if demos.task != self.task:
            raise DemoError(f"demonstrations of {demos.task} cannot evaluate a model of {self.task}")
        rho, first, last = [], [], []
        for ix in demos.episodes():
            phi = self.progress(demos.frames[ix])
            rho.append(_spearman(phi))
            first.append(float(phi[0]))
            last.append(float(phi[-1]))
        return {"progress_rank_correlation": float(np.mean(rho)), "progress_first": float(np.mean(first)),
                "progress_last": float(np.mean(last))}

    # -- inference ------------------------------------------------------------
    @torch.no_grad()
    def step_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 -> ``(B, K)`` probability that each frame is in step k."""
        if frames.ndim != 4 or frames.shape[1:3] != (self.frame_spec.height, self.frame_spec.width):
            raise ValueError(f"perceptual model for {self.task} reads ({self.frame_spec.height}, "
                             f"{self.frame_spec.width}) frames; got frames of shape {tuple(frames.shape)}")
        features = self.encoder(to_tensor(frames)).numpy()
        z = (features - self.mean) / self.std
        logits = np.einsum("bkm,km->bk", z[:, self.selected], self.coef) + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def progress(self, frames: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 -> ``(B,)`` progress through the demo steps in [0, 1]."""
        p = self.step_probabilities(frames)
        k = self.num_steps
        return (p @ (np.arange(1, k + 1) / k)) / np.maximum(1.0, p.sum(1))

    # -- files ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model atomically (``.pt``); pretrained weights are referenced by path."""

        state = self.encoder.state_dict() if self.encoder_config["kind"] == "tcn" else None
        payload = {"format": MODEL_FORMAT, "kind": "rewardgym-perceptual-model", "task": self.task,
                   "frame_spec": self.frame_spec.as_dict(), "encoder_config": self.encoder_config,
                   "encoder_state": state, "report": self.report,
                   **{name: torch.from_numpy(np.asarray(getattr(self, name))) for name in _ARRAYS}}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path, trusted: bool = False, encoder: bool = True) -> "PerceptualModel":
        """Read a model file; anything else is a ``ValueError`` naming the file and the field.

        Args:
            trusted: allow a model whose encoder is a TorchScript file (TorchScript is code,
                and the file is named by the model, which may come from anyone).
            encoder: build the encoder (False: only the report and metadata, e.g. ``demos show``).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such perceptual reward model")
        payload = _read_payload(path)
        if not _is_model_payload(payload):
            raise ValueError(f"{path}: not a rewardgym perceptual reward model (fit one with `rewardgym demos fit`)")
        if payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path}: perceptual model format {payload.get('format')!r} is not supported "
                             f"(this rewardgym reads format {MODEL_FORMAT})")
        try:
            config = payload["encoder_config"]
            kind = config["kind"]
            if kind == "torchscript" and encoder and not trusted:
                raise ValueError(f"{path}: this model's encoder is the TorchScript file {config.get('weights')!r}; "
                                 f"TorchScript is code, so it is loaded only for a trusted model (--trusted / "
                                 f"trusted=True)")
            module: nn.Module | None = None
            if not encoder:
                pass
            elif kind == "tcn":
                module = TCNEncoder(int(config["dim"]))
                module.load_state_dict(payload["encoder_state"])
                module.eval()
            elif kind == "torchscript":
                module = TorchScriptFeatures(config["weights"], config["input_size"])
            elif kind == "pretrained":
                module = PretrainedFeatures(config["arch"], config["weights"], config["input_size"])
            else:
                raise ValueError(f"{path}: unknown encoder kind {kind!r}")
            arrays = {name: payload[name].numpy() for name in _ARRAYS}
            report = payload.get("report", {})
            return cls(str(payload["task"]), FrameSpec(**payload["frame_spec"]), module, config, **arrays,
                       report=report if isinstance(report, dict) else {})
        except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {str(exc)[:200]}"
            raise ValueError(f"{path}: not a valid rewardgym perceptual reward model ({what}); refit it with "
                             f"`rewardgym demos fit`") from None


def _read_payload(path: Path) -> Any:
    """``torch.load`` with ``weights_only``: a model file is a shareable artifact; loading it must not run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path}: not a rewardgym perceptual reward model of format {MODEL_FORMAT} "
                         f"({type(exc).__name__}: {first_line}); refit it with `rewardgym demos fit`") from None


def _is_model_payload(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("kind") == "rewardgym-perceptual-model"


def is_perceptual_model(path: str | Path) -> bool:
    """Whether ``path`` is a perceptual model file (read safely; anything unreadable is not one).

    Used by ``shaping=`` to tell a perceptual model from a PPO checkpoint, both ``.pt``.
    """
    try:
        return Path(path).is_file() and _is_model_payload(_read_payload(Path(path)))
    except ValueError:
        return False
