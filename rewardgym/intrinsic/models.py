"""ONI's three reward models (Zheng et al. 2024), distilled online from the annotator's labels.

=================  ===========================================================================
``retrieval``      label look-up by caption hash: exact, instant, no generalisation (a caption
                   never labelled gets ``default``, 0).
``classification`` frozen caption encoder (all-MiniLM-L6-v2, 384-d) + a small MLP binary
                   classifier trained with class-balanced BCE on the labels; outputs
                   ``P(progress | caption)`` and generalises to unseen (paraphrased) captions.
``ranking``        encoder + MLP scalar ``r(c)`` trained with the Bradley-Terry loss on caption
                   pair preferences, ``P(a > b) = sigmoid(r(a) - r(b))`` (Motif, Klissarov et
                   al. 2023; ONI's ranking variant).
=================  ===========================================================================

``fit(labels, preferences)`` trains on everything labelled so far (warm-started across
calls, a fixed number of full-batch Adam steps); ``predict(captions) -> (N,)`` is the raw
model output. Both run in the ONI trainer thread, never in the learner's step. Weights are
initialised and minibatches drawn from the model's own ``torch.Generator``, so the
learner's global RNG stream is untouched.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from rewardgym.intrinsic.encoder import CaptionEncoder, torch_threads
from rewardgym.intrinsic.store import Label, Preference, caption_key

MODELS = ("retrieval", "classification", "ranking")


class RewardModel:
    """Interface: ``fit(labels, preferences) -> info``, ``predict(captions) -> (N,)``."""

    name = "model"
    uses_preferences = False
    output_range: tuple[float, float] | None = (0.0, 1.0)

    def fit(self, labels: dict[str, Label], preferences: Sequence[Preference] = ()) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, captions: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


class RetrievalModel(RewardModel):
    """Label look-up by caption hash (ONI-retrieval). Unknown captions get ``default``."""

    name = "retrieval"

    def __init__(self, default: float = 0.0):
        self.default = float(default)
        self._table: dict[str, float] = {}

    def fit(self, labels: dict[str, Label], preferences: Sequence[Preference] = ()) -> dict[str, float]:
        self._table = {k: float(lb.value) for k, lb in labels.items()}
        return {"examples": float(len(self._table))}

    def predict(self, captions: Sequence[str]) -> np.ndarray:
        table, d = self._table, self.default
        return np.array([table.get(caption_key(c), d) for c in captions], dtype=np.float64)


def _mlp(in_dim: int, hidden: int, generator, torch):
    """Linear-ReLU-Linear with weights drawn from ``generator`` (Kaiming-uniform-like)."""
    net = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    with torch.no_grad():
        for layer in (net[0], net[2]):
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
            layer.bias.zero_()
    return net


class _EncoderHead(RewardModel):
    def __init__(self, encoder: CaptionEncoder | None = None, hidden: int = 64, steps: int = 150, lr: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0):
        import torch

        self.torch = torch
        self.encoder = encoder or CaptionEncoder()
        self.steps = int(steps)
        self.generator = torch.Generator().manual_seed(int(seed))
        # The system may be built lazily inside the learner's torch.inference_mode() (rollouts):
        # parameters created there could never be trained.
        with torch.inference_mode(False), torch.enable_grad():
            self.net = _mlp(self.encoder.dim, int(hidden), self.generator, torch)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self.fitted = False

    def raw(self, captions: Sequence[str]) -> np.ndarray:
        if not captions:
            return np.zeros(0)
        x = self.torch.from_numpy(self.encoder.encode(list(captions)))
        with self.torch.no_grad(), torch_threads(1):
            return self.net(x).squeeze(-1).double().numpy()

    def fit(self, labels: dict[str, Label], preferences: Sequence[Preference] = ()) -> dict[str, float]:
        with torch_threads(1), self.torch.inference_mode(False), self.torch.enable_grad():
            return self._fit(labels, preferences)


class ClassificationModel(_EncoderHead):
    """Encoder + MLP binary classifier (ONI-classification); ``predict`` is ``P(label = 1)``.

    Labels in ``[0, 1]`` are BCE targets; positives and negatives are weighted to equal
    total weight (progress messages are rare). Before any label, predicts 0.
    """

    name = "classification"

    def _fit(self, labels: dict[str, Label], preferences: Sequence[Preference] = ()) -> dict[str, float]:
        torch = self.torch
        if not labels:
            return {"examples": 0.0}
        captions = [lb.caption for lb in labels.values()]
        y = torch.tensor([lb.value for lb in labels.values()], dtype=torch.float32)
        x = torch.from_numpy(self.encoder.encode(captions))
        pos = float(y.sum())
        neg = float(len(y)) - pos
        w = torch.where(y > 0.5, 0.5 / max(pos, 1.0), 0.5 / max(neg, 1.0)) * len(y)
        loss_fn = torch.nn.BCEWithLogitsLoss(weight=w)
        for _ in range(self.steps):
            self.opt.zero_grad()
            loss = loss_fn(self.net(x).squeeze(-1), y)
            loss.backward()
            self.opt.step()
        self.fitted = True
        with torch.no_grad():
            acc = float(((self.net(x).squeeze(-1) > 0).float() == (y > 0.5).float()).float().mean())
        return {"examples": float(len(y)), "loss": float(loss.item()), "train_accuracy": acc}

    def predict(self, captions: Sequence[str]) -> np.ndarray:
        if not self.fitted:
            return np.zeros(len(captions))
        return 1.0 / (1.0 + np.exp(-self.raw(captions)))


class RankingModel(_EncoderHead):
    """Encoder + MLP scalar reward trained with Bradley-Terry on pair preferences (ONI-ranking, Motif).

    Loss: ``BCE(sigmoid(r(a) - r(b)), p)`` with ``p`` the preference (1: a better, 0: b,
    0.5: tie). ``predict`` is the raw ``r`` (unbounded; :class:`~rewardgym.intrinsic.oni.OniReward`
    normalises it over the captions seen, as Motif normalises its reward model).
    """

    name = "ranking"
    uses_preferences = True
    output_range = None

    def __init__(self, *args, minibatch: int = 512, **kwargs):
        super().__init__(*args, **kwargs)
        self.minibatch = int(minibatch)

    def _fit(self, labels: dict[str, Label], preferences: Sequence[Preference] = ()) -> dict[str, float]:
        torch = self.torch
        if not preferences:
            return {"examples": 0.0}
        captions = sorted({c for p in preferences for c in (p.caption_a, p.caption_b)})
        index = {c: i for i, c in enumerate(captions)}
        x = torch.from_numpy(self.encoder.encode(captions))
        ia = torch.tensor([index[p.caption_a] for p in preferences])
        ib = torch.tensor([index[p.caption_b] for p in preferences])
        target = torch.tensor([p.value for p in preferences], dtype=torch.float32)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        n = len(preferences)
        for _ in range(self.steps):
            if n > self.minibatch:
                sel = torch.randint(0, n, (self.minibatch,), generator=self.generator)
                a, b, t = ia[sel], ib[sel], target[sel]
            else:
                a, b, t = ia, ib, target
            self.opt.zero_grad()
            r = self.net(x).squeeze(-1)
            loss = loss_fn(r[a] - r[b], t)
            loss.backward()
            self.opt.step()
        self.fitted = True
        with torch.no_grad():
            r = self.net(x).squeeze(-1)
            decided = target != 0.5
            acc = float(((r[ia] > r[ib]) == (target > 0.5))[decided].float().mean()) if decided.any() else float("nan")
        return {"examples": float(n), "loss": float(loss.item()), "train_accuracy": acc}

    def predict(self, captions: Sequence[str]) -> np.ndarray:
        if not self.fitted:
            return np.zeros(len(captions))
        return self.raw(captions)


def make_model(name: str, encoder: CaptionEncoder | None = None, seed: int = 0, **kwargs) -> RewardModel:
    """``"retrieval"`` | ``"classification"`` | ``"ranking"`` (the error lists the choices)."""
    if name == "retrieval":
        return RetrievalModel(**kwargs)
    if name == "classification":
        return ClassificationModel(encoder, seed=seed, **kwargs)
    if name == "ranking":
        return RankingModel(encoder, seed=seed, **kwargs)
    raise ValueError(f"unknown ONI reward model {name!r}; choose one of {', '.join(MODELS)}")
