"""Asynchronous annotation service: captions in, labels out, never blocking the learner.

ONI (Zheng et al. 2024) labels the agent's experience *while it trains*: the learner
submits the captions it sees; a background thread de-duplicates them, batches them to the
annotator, parses the labels and writes every label to the durable
:class:`~rewardgym.intrinsic.store.LabelStore`. The learner never waits: it keeps using
the reward model it has.

* :meth:`AnnotationService.submit` is O(new captions): a set look-up per caption, a deque
  append for a new one. Captions already labelled in the store (a restarted run, another
  run with the same labeller) are never asked again.
* Failures of the annotator (HTTP 429/500 after the client's own retries, time-outs,
  garbled replies) are logged and counted by kind; the batch's captions go back to the
  queue with an attempt count and the worker backs off exponentially (``backoff_initial_s``
  doubling to ``backoff_max_s``). A caption that failed ``max_attempts`` times is dropped
  from the queue (counted in ``failed``) and asked again if it is seen after
  ``retry_failed_after_s``.
* Preference mode (Motif / ONI-ranking): each new caption is paired with up to
  ``pairs_per_caption`` random captions seen before; pairs are what gets annotated.
* :meth:`stats` reports backlog, label counts, throughput (captions/s while labelling and
  over the service's lifetime), coverage (seen unique captions with a label, or in a stored
  preference / seen unique captions; never counted from the queue) and error
  counts; with ``stats_path`` they are also written there as JSON every few seconds.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from rewardgym.files import atomic_write_text
from rewardgym.intrinsic.annotators import AnnotationParseError, Annotator
from rewardgym.intrinsic.store import LabelStore, caption_key, normalize_caption, pair_key

log = logging.getLogger("rewardgym.intrinsic")


class AnnotationService:
    """Background labeller (see the module docstring).

    Args:
        annotator: the back-end (:class:`~rewardgym.intrinsic.annotators.LLMAnnotator`,
            :class:`~rewardgym.intrinsic.annotators.EmbeddingAnnotator`).
        store: the label store (its fingerprint must be ``annotator.config``'s).
        preferences: annotate caption pairs (ranking model) instead of single captions.
        pairs_per_caption: partners drawn for each new caption in preference mode.
        batch_size: items per annotator call (default: the annotator's).
        max_attempts: failures after which a caption leaves the queue.
        backoff_initial_s, backoff_max_s: worker back-off after a failed call.
        retry_failed_after_s: a dropped caption seen again after this long is re-queued.
        stats_path: JSON file the stats are written to (every ``stats_every_s`` s).
        seed: seed of the pair sampler.
        start: start the worker thread now.
    """

    def __init__(self, annotator: Annotator, store: LabelStore, *, preferences: bool = False,
                 pairs_per_caption: int = 4, batch_size: int | None = None, max_attempts: int = 5,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, retry_failed_after_s: float = 300.0,
                 stats_path: str | Path | None = None, stats_every_s: float = 5.0, seed: int = 0,
                 start: bool = True):
        self.annotator = annotator
        self.store = store
        self.preferences = bool(preferences)
        self.pairs_per_caption = int(pairs_per_caption)
        self.batch_size = int(batch_size or annotator.batch_size)
        self.max_attempts = int(max_attempts)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.retry_failed_after_s = float(retry_failed_after_s)
        self.stats_path = Path(stats_path) if stats_path else None
        self.stats_every_s = float(stats_every_s)
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._queue: collections.deque[tuple[Any, int]] = collections.deque()  # (item, attempts)
        self._seen: dict[str, str] = {}  # caption key -> caption, every caption submitted
        self._seen_list: list[str] = []  # keys in order (pair partners)
        self._failed_at: dict[str, float] = {}
        self._waiting: list[tuple[Any, int]] = []  # pair items without a partner yet
        self._in_flight = 0
        # what the store already holds: never asked again
        if self.preferences:
            prefs = store.preferences()
            self._done_pairs = store.preference_keys()
            self._done: set[str] = {caption_key(p.caption_a) for p in prefs} | {caption_key(p.caption_b) for p in prefs}
            for p in prefs:
                for c in (p.caption_a, p.caption_b):
                    k = caption_key(c)
                    if k not in self._seen:
                        self._seen[k] = c
                        self._seen_list.append(k)
        else:
            self._done_pairs = set()
            self._done = set(store.labels())
        # captions with a label (labels mode) or in a stored preference: what coverage counts
        self._labelled: set[str] = set(self._done)
        self.labelled_at_start = len(self._done_pairs) if self.preferences else len(self._done)
        self.version = 0  # increments whenever labels are written
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors_by_kind: collections.Counter[str] = collections.Counter()
        self.last_error: str | None = None
        self._busy_s = 0.0
        self._started = time.monotonic()
        self._last_stats_write = 0.0
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # -- learner side ------------------------------------------------------------------------
    def submit(self, captions: Iterable[Any]) -> int:
        """Queue the new captions among ``captions`` (normalised; ``""`` ignored). Never blocks
        on the annotator. Returns how many were queued."""
        queued = 0
        now = None
        for raw in captions:
            caption = raw if type(raw) is str and raw.isascii() and raw.isprintable() else normalize_caption(raw)
            if not caption:
                continue
            key = caption_key(caption)
            if key in self._seen:
                if key in self._failed_at:
                    now = now or time.monotonic()
                    if now - self._failed_at[key] >= self.retry_failed_after_s:
                        del self._failed_at[key]
                        with self._cond:
                            self._queue.append((self._item_for(key, caption), 0))
                            queued += 1
                continue
            with self._cond:
                self._seen[key] = caption
                self._seen_list.append(key)
                self.counts["submitted"] += 1
                if key in self._done:
                    self.counts["reused"] += 1
                    continue
                item = self._item_for(key, caption)
                if item is not None:
                    self._queue.append((item, 0))
                    queued += 1
                if self._waiting:  # pair items that lacked a partner get one now
                    self._queue.extend(self._waiting)
                    self._waiting.clear()
        if queued:
            with self._cond:
                self._cond.notify()
        return queued

    def _item_for(self, key: str, caption: str) -> Any:
        if not self.preferences:
            return caption
        return ("pairs", key, caption)  # expanded into pairs by the worker (partners known then)

    # -- worker ------------------------------------------------------------------------------
    def start(self) -> "AnnotationService":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rewardgym-oni-annotator", daemon=True)
            self._thread.start()
        return self

    def _take(self) -> list[tuple[Any, int]]:
        with self._cond:
            while not self._queue and not self._stop.is_set():
                self._cond.wait(timeout=0.5)
                self._maybe_write_stats()
            batch = []
            while self._queue and len(batch) < self.batch_size:
                item, attempts = self._queue.popleft()
                if self.preferences and isinstance(item, tuple) and item[0] == "pairs":
                    batch.extend((p, attempts) for p in self._pairs_for(item[1], item[2]))
                    continue
                batch.append((item, attempts))
            self._in_flight = len(batch)
            return batch

    def _pairs_for(self, key: str, caption: str) -> list[tuple[str, str]]:
        others = [k for k in self._seen_list if k != key]
        if not others:  # nothing to compare with yet: wait until another caption is seen
            self._waiting.append((("pairs", key, caption), 0))
            return []
        partners = self._rng.sample(others, min(self.pairs_per_caption, len(others)))
        out = []
        for other in partners:
            a, b = (key, other) if self._rng.random() < 0.5 else (other, key)
            if pair_key(a, b) in self._done_pairs or pair_key(b, a) in self._done_pairs:
                continue
            out.append((self._seen[a], self._seen[b]))
        self._done.add(key)
        return out

    def _run(self) -> None:
        from rewardgym.threads import limit_this_thread

        limit_this_thread(1)  # per thread: the learner's setting is untouched (rewardgym.threads)
        failures = 0
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                if self._stop.is_set():
                    break
                continue
            items = [item for item, _ in batch]
            attempt = max(att for _, att in batch)  # a retry is a new request (see annotators.py)
            t0 = time.monotonic()
            try:
                if self.preferences:
                    results = self.annotator.prefer(items, attempt=attempt)
                else:
                    results = self.annotator.label(items, attempt=attempt)
                if len(results) != len(items):
                    raise AnnotationParseError(f"annotator returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # noqa: BLE001 - the annotator must never take training down
                self._busy_s += time.monotonic() - t0
                failures += 1
                kind = "parse" if isinstance(exc, AnnotationParseError) else type(exc).__name__
                self.errors_by_kind[kind] += 1
                self.counts["errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("ONI annotation of %d item(s) failed (%s); retrying with back-off", len(items),
                            self.last_error)
                self._requeue(batch)
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (failures - 1))
                self._in_flight = 0
                self._stop.wait(delay * (0.5 + 0.5 * self._rng.random()))
                continue
            self._busy_s += time.monotonic() - t0
            failures = 0
            good = [r for r in results if r is not None]
            missing = [(item, att) for (item, att), r in zip(batch, results) if r is None]
            try:
                if self.preferences:
                    written = self.store.put_preferences(good)
                    for p in good:
                        self._done_pairs.add(pair_key(caption_key(p.caption_a), caption_key(p.caption_b)))
                        self._labelled.update((caption_key(p.caption_a), caption_key(p.caption_b)))
                else:
                    written = self.store.put_labels(good)
                    for lb in good:
                        self._done.add(caption_key(lb.caption))
                        self._labelled.add(caption_key(lb.caption))
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop training
                self.errors_by_kind[f"store:{type(exc).__name__}"] += 1
                self.counts["errors"] += 1
                self.last_error = f"label store: {type(exc).__name__}: {exc}"
                log.warning("ONI label store write failed: %s", self.last_error)
                self._requeue(batch)
                self._in_flight = 0
                self._stop.wait(self.backoff_initial_s)
                continue
            self.counts["labelled"] += written
            if missing:
                self.counts["unparsed"] += len(missing)
                self.errors_by_kind["partial"] += 1
                self._requeue(missing)
            with self._cond:
                self._in_flight = 0
                if written:
                    self.version += 1
                self._cond.notify_all()
            self._maybe_write_stats()
        self._maybe_write_stats(force=True)

    def _requeue(self, batch: list[tuple[Any, int]]) -> None:
        now = time.monotonic()
        with self._cond:
            for item, attempts in batch:
                if attempts + 1 >= self.max_attempts:
                    self.counts["failed"] += 1
                    if isinstance(item, str):
                        self._failed_at[caption_key(item)] = now
                    continue
                self._queue.append((item, attempts + 1))

    # -- reporting ---------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Items waiting or being annotated."""
        return len(self._queue) + self._in_flight

    def stats(self) -> dict[str, Any]:
        """Backlog, label counts, throughput, coverage, errors (JSON-able)."""
        with self._cond:  # the worker and the learner both change these sets
            seen = len(self._seen)
            labelled_seen = sum(1 for k in self._seen if k in self._labelled)
        elapsed = time.monotonic() - self._started
        labelled = self.counts["labelled"]
        return {
            "annotator": self.annotator.kind, "mode": "preferences" if self.preferences else "labels",
            "fingerprint": self.store.fingerprint, "store": str(self.store.path or ":memory:"),
            "seen_captions": seen, "backlog": self.backlog,
            "labelled": labelled, "labelled_at_start": self.labelled_at_start,
            "reused": self.counts["reused"], "coverage": labelled_seen / seen if seen else 0.0,
            "throughput_busy": labelled / self._busy_s if self._busy_s > 0 else 0.0,
            "throughput_wall": labelled / elapsed if elapsed > 0 else 0.0,
            "errors": self.counts["errors"], "errors_by_kind": dict(self.errors_by_kind),
            "unparsed": self.counts["unparsed"], "failed": self.counts["failed"], "last_error": self.last_error,
            "elapsed_s": round(elapsed, 3),
        }

    def _maybe_write_stats(self, force: bool = False) -> None:
        if self.stats_path is None:
            return
        now = time.monotonic()
        if not force and now - self._last_stats_write < self.stats_every_s:
            return
        self._last_stats_write = now
        try:
            atomic_write_text(self.stats_path, json.dumps(self.stats(), indent=1))
        except OSError as exc:
            log.debug("could not write ONI stats to %s: %s", self.stats_path, exc)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the queue is empty and nothing is in flight (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.1))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (after its current call) and write the final stats."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        self._maybe_write_stats(force=True)

    def labelled_keys(self) -> frozenset[str]:
        """Keys of the captions that have a label (or a stored preference)."""
        with self._cond:
            return frozenset(self._labelled)

    def seen_captions(self) -> dict[str, str]:
        """``{key: caption}`` of every caption submitted (a copy)."""
        with self._cond:
            return dict(self._seen)
