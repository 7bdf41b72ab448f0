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
* **a file with SQL of its own** (a trigger or a view; a received run's store may be
  hostile): refused with a :class:`StoreError` before any statement could run it. Every
  connection also runs with ``trusted_schema=OFF`` and a per-statement budget of SQLite
  steps, and a file or row count beyond what a run holds is refused (``MAX_STORE_*``).

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

# What a received label store may be (a run directory, hence its store, may come from anyone).
MAX_STORE_BYTES = 2**30
"""Largest store file (with its ``-wal``) opened: 1 GiB, some 1,000,000 labels and preferences with
their captions and raw answers; a run's store is a few MB."""
MAX_STORE_ROWS = 1_000_000
"""Most labels, and most preferences, a store may hold (ONI labels distinct messages; a NetHack
run sees some thousands)."""
MAX_STORE_FINGERPRINTS = 10_000
"""Most labellers (prompt/annotator fingerprints) a store may hold."""
MAX_STORE_VALUE_BYTES = 2**20
"""Longest text in a store (SQLite's ``SQLITE_LIMIT_LENGTH``): a caption is 512 characters, a
labeller's configuration (its prompt) a few KB."""
MAX_STATEMENT_VM_STEPS = 100_000_000
"""SQLite virtual-machine steps one statement (with its fetch) may take; reading every label of
a full store takes ~20 per row. More is stopped by the connection's progress handler."""
PROGRESS_INTERVAL = 10_000
"""VM steps between two calls of the progress handler."""


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


def _allowed_schema() -> frozenset[tuple[str, str, str, str | None]]:
    """``(type, name, tbl_name, sql)`` of every object :data:`_SCHEMA` creates, as SQLite records them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(_SCHEMA)
        return frozenset(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        conn.close()


_ALLOWED_SCHEMA = _allowed_schema()


class _GuardedConnection:
    """A connection whose every statement runs under a budget of VM steps
    (:data:`MAX_STATEMENT_VM_STEPS`, counted from the call that started it, fetch included), and
    with ``trusted_schema=OFF`` and ``SQLITE_LIMIT_LENGTH`` = :data:`MAX_STORE_VALUE_BYTES`. A
    statement over budget is stopped: a :class:`StoreError` naming the file."""

    def __init__(self, target: str, where: str):
        self.where = where
        self._steps = 0
        self.raw = sqlite3.connect(target, check_same_thread=False, timeout=30.0, isolation_level=None)
        self.raw.set_progress_handler(self._progress, PROGRESS_INTERVAL)
        self.raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_STORE_VALUE_BYTES)
        self.raw.execute("PRAGMA trusted_schema=OFF")

    def _progress(self) -> int:
        self._steps += PROGRESS_INTERVAL
        return int(self._steps > MAX_STATEMENT_VM_STEPS)

    def _run(self, call, *args):
        self._steps = 0
        try:
            return call(*args)
        except sqlite3.OperationalError:
            if self._steps > MAX_STATEMENT_VM_STEPS:
                raise StoreError(f"{self.where}: a statement on the label store ran past {MAX_STATEMENT_VM_STEPS:,} "
                                 "SQLite steps and was stopped (a store this big or this slow is not one rewardgym "
                                 "wrote)") from None
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._run(self.raw.execute, sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """All rows of ``sql``: the fetch runs under the same budget as the statement."""
        return self._run(lambda: self.raw.execute(sql, params).fetchall())

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self._run(self.raw.executemany, sql, rows)

    def executescript(self, script: str) -> sqlite3.Cursor:
        return self._run(self.raw.executescript, script)

    def close(self) -> None:
        self.raw.close()


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
    def _connect(self) -> _GuardedConnection:
        """A guarded connection on which nothing has run yet but the guards' own pragma."""
        where = str(self.path or ":memory:")
        if self.path is None:
            return _GuardedConnection(":memory:", where)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal")) if p.is_file())
        if size > MAX_STORE_BYTES:
            raise StoreError(f"{where}: {size:,} bytes (with its -wal file), more than a run's label store can be "
                             f"({MAX_STORE_BYTES:,} bytes); refused")
        return _GuardedConnection(str(self.path), where)

    def _check_schema(self, conn: _GuardedConnection) -> str | None:
        """Compare the file's schema with the objects :data:`_SCHEMA` creates, before any other
        statement touches its tables. A trigger or a view (SQL of the file's own that a write
        or a read would run) is refused; any other object, or one of ours with other SQL
        (constraints, defaults, expression indexes), makes it "not a label store" (moved aside,
        never used). Returns that reason, or None."""
        objects = conn.query("SELECT type, name, tbl_name, sql FROM sqlite_master")
        for kind, name, _, _ in objects:
            if kind in ("trigger", "view"):
                raise StoreError(f"{conn.where}: the label store holds a {kind} {str(name)[:100]!r}; a rewardgym label "
                                 "store has none, and opening it would run the file's own SQL (refused; move the "
                                 "file away to start a fresh store)")
        if not set(objects) <= _ALLOWED_SCHEMA:
            return "not-a-label-store"
        return None

    def _check_rows(self, conn: _GuardedConnection) -> None:
        counts = {table: conn.query(f"SELECT COUNT(*) FROM {table}")[0][0]
                  for table in ("labels", "preferences", "fingerprints")}
        for table, count in counts.items():
            limit = MAX_STORE_FINGERPRINTS if table == "fingerprints" else MAX_STORE_ROWS
            if count > limit:
                raise StoreError(f"{conn.where}: the label store holds {count:,} {table} rows, more than a run holds "
                                 f"({limit:,}); refused")

    def _open(self) -> _GuardedConnection:
        reason = None
        conn = self._connect()  # a file too large is refused here, before SQLite reads it
        try:
            reason = self._check_schema(conn) if self.path is not None else None
            tables = {r[1] for r in conn.query("SELECT type, name FROM sqlite_master") if r[0] == "table"}
            if reason is not None:  # nothing else is read from a file that is not ours
                pass
            elif tables and "meta" not in tables:
                reason = "not-a-label-store"
            elif "meta" in tables:
                meta = dict(conn.query("SELECT key, value FROM meta LIMIT 100"))
                if meta.get("app") != APP_ID:
                    reason = "not-a-label-store"
                elif meta.get("schema_version") != str(SCHEMA_VERSION):
                    reason = f"schema-v{meta.get('schema_version')}"
                else:
                    self._check_rows(conn)
        except sqlite3.DatabaseError as exc:  # not a database at all, or corrupt
            reason = "corrupt"
            log.debug("label store %s: %s", self.path, exc)
        except BaseException:
            conn.close()
            raise
        if reason is not None:
            conn.close()
            conn = self._move_aside_and_connect(reason)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (APP_ID,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return conn

    def _move_aside_and_connect(self, reason: str) -> _GuardedConnection:
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
            foreign = self._conn.query("SELECT COUNT(*) FROM labels WHERE fingerprint != ?", (self.fingerprint,))[0][0]
            others = self._conn.query("SELECT fingerprint FROM fingerprints WHERE fingerprint != ? LIMIT 20",
                                      (self.fingerprint,)) if foreign else []
        if foreign:
            log.warning("label store %s holds %d labels of another prompt/annotator (fingerprints %s); they are "
                        "ignored and this run labels under fingerprint %s", self.path, foreign,
                        ", ".join(str(f) for f, in others), self.fingerprint)
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
            rows = self._conn.query("SELECT caption, value, score, raw FROM labels WHERE fingerprint=? AND key=?",
                                    (self.fingerprint, caption_key(caption)))
        if not rows:
            return None
        row = rows[0]
        return Label(row[0], self._value(row[1], f"label of {row[0]!r}"), _score(row[2]), row[3] or "")

    def labels(self) -> dict[str, Label]:
        """All labels of this fingerprint, ``{caption_key: Label}``."""
        with self._lock:
            rows = self._conn.query("SELECT key, caption, value, score, raw FROM labels WHERE fingerprint=?",
                                    (self.fingerprint,))
        return {k: Label(c, self._value(v, f"label of {c!r}"), _score(s), r or "") for k, c, v, s, r in rows}

    def preferences(self) -> list[Preference]:
        """All pair preferences of this fingerprint."""
        with self._lock:
            rows = self._conn.query("SELECT caption_a, caption_b, value, raw FROM preferences WHERE fingerprint=?",
                                    (self.fingerprint,))
        return [Preference(a, b, self._value(v, f"preference {a!r} vs {b!r}"), r or "") for a, b, v, r in rows]

    def preference_keys(self) -> set[str]:
        with self._lock:
            rows = self._conn.query("SELECT key_a, key_b FROM preferences WHERE fingerprint=?", (self.fingerprint,))
        return {pair_key(a, b) for a, b in rows}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.query("SELECT COUNT(*) FROM labels WHERE fingerprint=?", (self.fingerprint,))[0][0])

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
