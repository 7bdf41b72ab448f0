"""Durable label store for ONI / Motif annotations: SQLite, one row per caption (or pair).

Captions are keyed by :func:`caption_key` (blake2b-128 hex of the normalised UTF-8 text).
Every label is stored under the *fingerprint* of the labeller that produced it (annotator
kind, prompt text, model, goal ...), so one file can hold labels of several prompts
without mixing them: a store opened with another fingerprint sees none of the others'
labels, and says so once (:attr:`LabelStore.foreign_labels`, a warning in the log).

Decision for "a database file from another prompt/version" (documented in docs/ONI.md):

* **another prompt / annotator** (same schema): not an error. Its labels stay in the file,
  untouched and unused; this run labels under its own fingerprint. Going back to the
  first prompt re-uses the first labels.
* **another schema version, or a file that is not a rewardgym label store** (another
  SQLite database, a corrupt file, random bytes): the file is moved aside to
  ``<name>.<reason>-<time>.bak`` and a fresh store is created in its place, with a
  warning that names both files. A training run never stops because of its label file.

Concurrency: the connection is shared by the annotation thread and the trainer thread
behind a lock; WAL journal mode lets other processes (``sqlite3`` CLI, a monitor) read
while a run writes. Each batch of labels is one transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger("rewardgym.intrinsic")

SCHEMA_VERSION = 1
MAX_CAPTION_CHARS = 512
APP_ID = "rewardgym.intrinsic.labels"


# -- captions -------------------------------------------------------------------------------
def normalize_caption(caption: Any) -> str:
    """A caption as stored and hashed: text, NFC, control characters dropped, whitespace collapsed.

    Accepts ``str``, ``bytes``/``bytearray``/``numpy.bytes_`` (decoded as UTF-8, undecodable
    bytes replaced by U+FFFD: NetHack messages are ASCII/latin-1, anything else is reported
    as is rather than crashing), ``None`` (``""``) and anything else (``str(x)``). Longer
    than :data:`MAX_CAPTION_CHARS` characters is cut there. ``""`` means "no message".
    """
    if caption is None:
        return ""
    if isinstance(caption, (bytes, bytearray, memoryview)):
        caption = bytes(caption).split(b"\0", 1)[0].decode("utf-8", errors="replace")
    elif not isinstance(caption, str):
        caption = str(caption)
    if caption.isascii() and caption.isprintable():
        text = caption
    else:
        caption = unicodedata.normalize("NFC", caption)
        text = "".join(ch if ch.isprintable() else " " for ch in caption)
    text = " ".join(text.split())
    return text[:MAX_CAPTION_CHARS]


def caption_key(caption: str) -> str:
    """blake2b-128 hex digest of a (normalised) caption: the store's primary key."""
    return hashlib.blake2b(caption.encode("utf-8", errors="surrogatepass"), digest_size=16).hexdigest()


def pair_key(key_a: str, key_b: str) -> str:
    return f"{key_a}:{key_b}"


def fingerprint_of(config: dict[str, Any]) -> str:
    """sha256 hex (first 16) of the canonical JSON of a labeller's configuration."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Label:
    """One caption's label.

    Attributes:
        caption: the normalised caption.
        value: the label in ``[0, 1]`` (1: a sign of progress, 0: not; annotators may give
            graded values, e.g. the embedding back-end's calibrated score).
        score: the annotator's raw score (cosine similarity, LLM's number ...), informative.
        raw: the annotator's raw answer for this caption (for audits), may be ``""``.
    """

    caption: str
    value: float
    score: float = float("nan")
    raw: str = ""


@dataclass(frozen=True)
class Preference:
    """An LLM/annotator preference between two captions (Motif): ``value`` = P(a better than b).

    1.0: a is better, 0.0: b is better, 0.5: no preference / tie.
    """

    caption_a: str
    caption_b: str
    value: float
    raw: str = ""


class StoreError(RuntimeError):
    """The label store cannot be used (the message names the file)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    fingerprint TEXT NOT NULL, key TEXT NOT NULL, caption TEXT NOT NULL,
    value REAL NOT NULL, score REAL, raw TEXT, created REAL NOT NULL,
    PRIMARY KEY (fingerprint, key));
CREATE TABLE IF NOT EXISTS preferences (
    fingerprint TEXT NOT NULL, key_a TEXT NOT NULL, key_b TEXT NOT NULL,
    caption_a TEXT NOT NULL, caption_b TEXT NOT NULL, value REAL NOT NULL, raw TEXT,
    created REAL NOT NULL, PRIMARY KEY (fingerprint, key_a, key_b));
"""


class LabelStore:
    """SQLite store of caption labels and caption-pair preferences of one labeller.

    Args:
        path: the database file (created with its parent directory), or ``":memory:"``.
        config: the labeller's configuration (annotator kind, prompt, model, goal ...);
            its :func:`fingerprint_of` scopes every read and write.

    Attributes:
        fingerprint: this labeller's fingerprint.
        foreign_labels: labels in the file under other fingerprints (ignored).
        recovered_from: path a broken/incompatible file was moved to (None if none).
    """

    def __init__(self, path: str | Path, config: dict[str, Any]):
        self.path = Path(path) if str(path) != ":memory:" else None
        self.config = dict(config)
        self.fingerprint = fingerprint_of(self.config)
        self.recovered_from: Path | None = None
        self._lock = threading.RLock()
        self._conn = self._open()
        self.foreign_labels = self._register()

    # -- opening ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(target, check_same_thread=False, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _open(self) -> sqlite3.Connection:
        reason = None
        try:
            conn = self._connect()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                reason = "not-a-label-store"
            elif "meta" in tables:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("app") != APP_ID:
                    reason = "not-a-label-store"
                elif meta.get("schema_version") != str(SCHEMA_VERSION):
                    reason = f"schema-v{meta.get('schema_version')}"
        except sqlite3.DatabaseError as exc:  # not a database at all, or corrupt
            reason = "corrupt"
            log.debug("label store %s: %s", self.path, exc)
            conn = None
        if reason is not None:
            if conn is not None:
                conn.close()
            conn = self._move_aside_and_connect(reason)
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (APP_ID,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return conn

    def _move_aside_and_connect(self, reason: str) -> sqlite3.Connection:
        if self.path is None:
            raise StoreError("in-memory label store could not be initialised")
        backup = self.path.with_name(f"{self.path.name}.{reason}-{time.strftime('%Y%m%d-%H%M%S')}.bak")
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(backup.with_name(backup.name + suffix))
        self.path.replace(backup)
        self.recovered_from = backup
        log.warning("label store %s is %s (expected a rewardgym label store, schema %d): moved it to %s "
                    "and started a fresh store", self.path, reason.replace("-", " "), SCHEMA_VERSION, backup)
        return self._connect()

    def _register(self) -> int:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?, ?)",
                               (self.fingerprint, json.dumps(self.config, sort_keys=True, default=str), time.time()))
            foreign = self._conn.execute("SELECT COUNT(*) FROM labels WHERE fingerprint != ?",
                                         (self.fingerprint,)).fetchone()[0]
        if foreign:
            others = self._conn.execute("SELECT fingerprint, config FROM fingerprints WHERE fingerprint != ?",
                                        (self.fingerprint,)).fetchall()
            log.warning("label store %s holds %d labels of another prompt/annotator (fingerprints %s); they are "
                        "ignored and this run labels under fingerprint %s", self.path, foreign,
                        ", ".join(f for f, _ in others), self.fingerprint)
        return int(foreign)

    # -- writing ----------------------------------------------------------------------------
    def _value(self, value: Any, what: str) -> float:
        """A label or preference value as a float in [0, 1], or a StoreError naming the file and the entry
        (a store may be received from someone else: an ``inf`` label must not reach a reward model)."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not (math.isfinite(number) and 0.0 <= number <= 1.0):
            raise StoreError(f"{self.path or ':memory:'}: {what} has value {value!r}; label values must be finite "
                             f"numbers in [0, 1]")
        return number

    def put_labels(self, labels: Iterable[Label]) -> int:
        """Insert or replace labels (one transaction); returns how many were written."""
        now = time.time()
        rows = [(self.fingerprint, caption_key(lb.caption), lb.caption, self._value(lb.value, f"label of {lb.caption!r}"),
                 None if lb.score != lb.score else float(lb.score), lb.raw, now) for lb in labels]
        return self._insert_or_replace("labels", rows)

    def put_preferences(self, prefs: Iterable[Preference]) -> int:
        """Insert or replace pair preferences (one transaction); returns how many were written."""
        now = time.time()
        rows = [(self.fingerprint, caption_key(p.caption_a), caption_key(p.caption_b), p.caption_a, p.caption_b,
                 self._value(p.value, f"preference {p.caption_a!r} vs {p.caption_b!r}"), p.raw, now) for p in prefs]
        return self._insert_or_replace("preferences", rows)

    def _insert_or_replace(self, table: str, rows: list[tuple]) -> int:
        """Write ``rows`` into ``table`` in one transaction (all or none); returns how many."""
        if not rows:
            return 0
        placeholders = ", ".join("?" * len(rows[0]))
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({placeholders})", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(rows)

    # -- reading ----------------------------------------------------------------------------
    def get(self, caption: str) -> Label | None:
        """The label of ``caption`` (normalised) under this fingerprint, or None."""
        with self._lock:
            row = self._conn.execute("SELECT caption, value, score, raw FROM labels WHERE fingerprint=? AND key=?",
                                     (self.fingerprint, caption_key(caption))).fetchone()
        if row is None:
            return None
        return Label(row[0], self._value(row[1], f"label of {row[0]!r}"), _score(row[2]), row[3] or "")

    def labels(self) -> dict[str, Label]:
        """All labels of this fingerprint, ``{caption_key: Label}``."""
        with self._lock:
            rows = self._conn.execute("SELECT key, caption, value, score, raw FROM labels WHERE fingerprint=?",
                                      (self.fingerprint,)).fetchall()
        return {k: Label(c, self._value(v, f"label of {c!r}"), _score(s), r or "") for k, c, v, s, r in rows}

    def preferences(self) -> list[Preference]:
        """All pair preferences of this fingerprint."""
        with self._lock:
            rows = self._conn.execute("SELECT caption_a, caption_b, value, raw FROM preferences WHERE fingerprint=?",
                                      (self.fingerprint,)).fetchall()
        return [Preference(a, b, self._value(v, f"preference {a!r} vs {b!r}"), r or "") for a, b, v, r in rows]

    def preference_keys(self) -> set[str]:
        with self._lock:
            rows = self._conn.execute("SELECT key_a, key_b FROM preferences WHERE fingerprint=?",
                                      (self.fingerprint,)).fetchall()
        return {pair_key(a, b) for a, b in rows}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM labels WHERE fingerprint=?",
                                          (self.fingerprint,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"LabelStore({self.path or ':memory:'}, fingerprint={self.fingerprint})"


def _score(value: Any) -> float:
    """An informative raw score: NaN when missing or not a finite number (it never feeds a reward)."""
    try:
        number = float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")
    return number if math.isfinite(number) else float("nan")


def labels_from(captions: Sequence[str], values: Sequence[float]) -> list[Label]:
    """Convenience: ``[Label(c, v)]``."""
    return [Label(c, float(v)) for c, v in zip(captions, values)]
