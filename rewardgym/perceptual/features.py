"""Per-frame features for perceptual rewards: a time-contrastive encoder, or a pretrained network.

Sermanet et al. (2016) take features from an ImageNet-pretrained Inception network. A
machine without internet has no such weights, so the default is a small convolutional
encoder trained on the demonstrations themselves with the single-view time-contrastive
objective of Sermanet et al. (2018, "Time-Contrastive Networks"): frames close in time
embed close together, frames far apart in the same episode embed far apart (triplet
loss). When the user supplies pretrained weights (the paper's setting),
:class:`PretrainedFeatures` runs a torchvision architecture on a state-dict file, and
:class:`TorchScriptFeatures` runs any network exported as TorchScript (no torchvision needed).

Frames in, features out: ``(B, H, W, 3)`` uint8 -> ``(B, D)`` float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 in [0, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


class TCNEncoder(nn.Module):
    """Small CNN ``(B, 3, H, W) -> (B, D)``: 3 strided convolutions, global average pool, linear.

    Args:
        dim: feature dimension ``D``.
    """

    def __init__(self, dim: int = 32):
        super().__init__()
        self.dim = dim
        self.conv = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(64 * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        # 2x2 adaptive pooling keeps coarse "where" information that a global pool would lose.
        h = F.adaptive_avg_pool2d(h, 2).flatten(1)
        return self.head(h)


def _augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random shifts of up to ``pad`` pixels (replicate padding) and brightness jitter ±10 %."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    # One translation per image through an affine grid (one batched op, no Python loop).
    shift = (torch.randint(-pad, pad + 1, (b, 2), generator=generator).float() * 2.0
             / torch.tensor([w + 2 * pad, h + 2 * pad]))
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w / (w + 2 * pad)
    theta[:, 1, 1] = h / (h + 2 * pad)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    out = F.grid_sample(padded, grid, mode="nearest", align_corners=False)
    scale = 1.0 + 0.2 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    return (out * scale).clamp_(0.0, 1.0)


def train_tcn(frames: np.ndarray, episode: np.ndarray, dim: int = 32, iterations: int = 600,
              batch_size: int = 32, positive_window: int = 2, negative_gap: int = 8, margin: float = 0.2,
              lr: float = 1e-3, seed: int = 0,
              on_progress: Callable[[int, float], None] | None = None) -> TCNEncoder:
    """Train a :class:`TCNEncoder` with the single-view time-contrastive triplet loss.

    For an anchor frame at time t of an episode, the positive is a frame within
    ``positive_window`` steps and the negative a frame of the same episode at least
    ``negative_gap`` steps away; loss = max(0, |f(a)-f(p)|² − |f(a)-f(n)|² + margin) on
    L2-normalised embeddings (Sermanet et al. 2018, section III-A).

    Args:
        frames: ``(N, H, W, 3)`` uint8.
        episode: ``(N,)`` episode index of each frame (frames of an episode are contiguous, in order).
        iterations: gradient steps of ``batch_size`` triplets.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = TCNEncoder(dim)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    images = to_tensor(frames)
    starts = {int(e): int(np.flatnonzero(episode == e)[0]) for e in np.unique(episode)}
    lengths = {int(e): int(np.sum(episode == e)) for e in np.unique(episode)}
    usable = np.flatnonzero([lengths[int(e)] > negative_gap for e in episode])
    if len(usable) == 0:
        raise ValueError(f"episodes are too short for time-contrastive training (need more than {negative_gap} frames)")
    for it in range(iterations):
        anchor = rng.choice(usable, batch_size)
        ep = episode[anchor]
        start = np.array([starts[int(e)] for e in ep])
        length = np.array([lengths[int(e)] for e in ep])
        t = anchor - start
        positive = np.clip(t + rng.integers(-positive_window, positive_window + 1, batch_size), 0, length - 1)
        # Negative: uniform over the frames at least negative_gap away (rejection by re-drawing).
        negative = rng.integers(0, length)
        far = np.abs(negative - t) >= negative_gap
        while not far.all():
            negative[~far] = rng.integers(0, length[~far])
            far = np.abs(negative - t) >= negative_gap
        index = torch.as_tensor(np.concatenate([anchor, start + positive, start + negative]))
        z = F.normalize(encoder(_augment(images[index], generator)), dim=1)
        za, zp, zn = z.split(batch_size)
        loss = F.relu((za - zp).pow(2).sum(1) - (za - zn).pow(2).sum(1) + margin).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_progress is not None and (it % 100 == 0 or it == iterations - 1):
            on_progress(it, float(loss.detach()))
    encoder.eval()
    return encoder


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def imagenet_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> resized to ``size``x``size`` and normalised as ImageNet networks expect."""
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


class PretrainedFeatures(nn.Module):
    """A torchvision classification network on user-supplied weights, classifier removed.

    Frames are resized to ``input_size`` and normalised with ImageNet statistics; the
    output is the network's penultimate (pooled) features.

    Args:
        arch: a torchvision model name (``resnet18``, ``resnet50``, ``inception_v3`` ...).
        weights: path of a state dict for that architecture (``torch.save(model.state_dict())``).
        input_size: side of the resized input, pixels.

    Raises:
        ValueError: unknown architecture, unreadable file, or weights that do not match the
            architecture (the message names the file and the mismatching keys).
    """

    def __init__(self, arch: str, weights: str | Path, input_size: int = 224):
        super().__init__()
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"unknown torchvision architecture {arch!r}; e.g. resnet18, resnet50, inception_v3")
        kwargs: dict[str, Any] = {"weights": None}
        if arch == "inception_v3":
            kwargs["aux_logits"] = True
            kwargs["init_weights"] = False
        net = torchvision.models.get_model(arch, **kwargs)
        path = Path(weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise ValueError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[:3]
            raise ValueError(f"{path}: weights do not match torchvision {arch}: {' '.join(first)}") from None
        for head in ("fc", "classifier", "heads"):
            if hasattr(net, head):
                setattr(net, head, nn.Identity())
        if hasattr(net, "AuxLogits"):
            net.AuxLogits = None
            net.aux_logits = False
        self.net = net.eval()
        self.arch = arch
        self.weights = str(path)
        self.input_size = int(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(imagenet_input(x, self.input_size))


class TorchScriptFeatures(nn.Module):
    """A user's pretrained network exported as TorchScript (``torch.jit.save``): needs torch only.

    For a torchvision network without a working torchvision (its wheels are built for
    one torch build): on a machine where it works, drop the classifier and export it::

        net = torchvision.models.resnet18(weights="IMAGENET1K_V1"); net.fc = torch.nn.Identity()
        torch.jit.script(net.eval()).save("resnet18_features.pt")

    Input: frames resized to ``input_size`` and normalised with ImageNet statistics; the
    output is flattened to ``(B, D)``.

    Raises:
        ValueError: the file is not a TorchScript module (the message names it).
    """

    def __init__(self, path: str | Path, input_size: int = 224):
        super().__init__()
        path = Path(path)
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise ValueError(f"{path}: not a TorchScript module ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        self.weights = str(path)
        self.input_size = int(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(imagenet_input(x, self.input_size)).flatten(1)


@torch.no_grad()
def embed(encoder: nn.Module, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Features of ``frames`` ``(N, H, W, 3)`` uint8 -> ``(N, D)`` float32, in batches."""
    out = [encoder(to_tensor(frames[i:i + batch_size])).float().numpy() for i in range(0, len(frames), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
