"""The reward-program library: expert programs shipped with rewardgym plus programs you (or
the synthesis loop) add, and retrieval of few-shot examples by similarity to an instruction.

Two sources:

* **expert**: ``rewardgym/rewards/library/<Family>-<Task>.py``, one per task; the module
  docstring describes the reward term by term.
* **user**: ``$REWARDGYM_LIBRARY`` (default ``~/.rewardgym/library``): ``<name>.py`` plus a
  ``<name>.json`` sidecar with ``task_id``, ``created`` and free metadata (instruction,
  success rate, run directory ...). :func:`add_program` validates the program against the
  task's state view with the sandbox before storing it.

Retrieval (:func:`retrieve`) ranks programs by TF-IDF cosine similarity (Salton & Buckley,
1988; sublinear tf, smoothed idf, L2-normalised rows; numpy only) between the instruction
and each program's *document*: its docstring, its task's instruction and short name, its
family, the state fields and term names it uses (``torso_height`` counts as ``torso
height``), plus a user program's recorded instruction. Tokens are lower-cased words with a
light suffix stemmer (running/runs/ran are not unified, but run/runs/running are). Programs
whose task shares the target task's state view get a bonus of :data:`SAME_VIEW_BONUS`
(their field names are valid there), so a same-family program wins unless another family's
matches much better. The target task's own expert is excluded by default: a synthesis
run that sees the expert answer would not be a fair comparison against it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rewardgym.files import atomic_write_text
from rewardgym.envs.task import LIBRARY_DIR, TaskSpec

ENV_LIBRARY = "REWARDGYM_LIBRARY"
DEFAULT_USER_LIBRARY = Path("~/.rewardgym/library")
SAME_VIEW_BONUS = 0.25
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STOPWORDS = frozenset("""a an the and or of to in on at by for with from as is are be it its this that these those
into onto over under than then so such while without within not no do does done can may must should
you your their them they he she his her we our as if when where which who what how possible
one two each every per up down all any more most less least very also just only""".split())


class LibraryError(ValueError):
    """A library operation failed (unknown name, clash with an expert program ...)."""


@dataclass(frozen=True)
class LibraryEntry:
    """One program in the library.

    Attributes:
        name: ``Hopper-Hop`` (expert) or the user program's name.
        path: the ``.py`` file.
        origin: ``"expert"`` or ``"user"``.
        task_id: the task it was written for (``rewardgym/Hopper-Hop-v0``), if known.
        family: that task's family (``locomotion`` ...), if known.
        view: that task's view name (``locomotion``, ``nethack`` ...), if known.
        summary: first line of the docstring.
        doc: the whole module docstring.
        metadata: the user sidecar's content (empty for expert programs).
    """

    name: str
    path: Path
    origin: str
    task_id: str | None
    family: str | None
    view: str | None
    summary: str
    doc: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def row(self) -> dict[str, str]:
        """Table row for ``rewardgym library list``: name, origin, task, family, summary."""
        return {"name": self.name, "origin": self.origin, "task": self.task_id or "", "family": self.family or "",
                "summary": self.summary}


def user_library_dir() -> Path:
    """``$REWARDGYM_LIBRARY`` or ``~/.rewardgym/library`` (may not exist yet)."""
    return Path(os.environ.get(ENV_LIBRARY) or DEFAULT_USER_LIBRARY).expanduser()


def _tasks() -> dict[str, TaskSpec]:
    from rewardgym.envs.registry import all_tasks

    return all_tasks()


def _task_for(task_id: str | None) -> TaskSpec | None:
    if not task_id:
        return None
    from rewardgym.envs.registry import UnknownTaskError, get_task

    try:
        return get_task(task_id)
    except UnknownTaskError:
        return None


def _docstring(source: str) -> str:
    try:
        return ast.get_docstring(ast.parse(source)) or ""
    except (SyntaxError, ValueError):
        return ""


@lru_cache(maxsize=512)
def _entry_cached(path: str, mtime_ns: int, origin: str, meta_json: str) -> LibraryEntry:
    p = Path(path)
    meta = json.loads(meta_json)
    doc = _docstring(p.read_text(encoding="utf-8"))
    if origin == "expert":
        by_file = {t.expert: t for t in _tasks().values() if t.expert}
        task = by_file.get(p.name) or _task_for(p.stem)
    else:
        task = _task_for(meta.get("task_id"))
    summary = doc.strip().split("\n")[0].strip() if doc.strip() else str(meta.get("instruction", ""))[:100]
    return LibraryEntry(name=p.stem, path=p, origin=origin, task_id=task.id if task else meta.get("task_id"),
                        family=task.family if task else None, view=task.view.name if task else None,
                        summary=summary, doc=doc, metadata=meta)


def _entry(path: Path, origin: str) -> LibraryEntry:
    meta: dict[str, Any] = {}
    sidecar = path.with_suffix(".json")
    if origin == "user" and sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            meta = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError):
            meta = {}
    return _entry_cached(str(path), path.stat().st_mtime_ns, origin, json.dumps(meta, sort_keys=True, default=str))


def list_programs(origin: str | None = None, user_dir: str | Path | None = None) -> list[LibraryEntry]:
    """Every library program, experts first (by name), then user programs (by name).

    Args:
        origin: ``"expert"`` or ``"user"`` to list only those.
        user_dir: the user library (default :func:`user_library_dir`).
    """
    if origin not in (None, "expert", "user"):
        raise ValueError(f"origin must be 'expert', 'user' or None, got {origin!r}")
    entries: list[LibraryEntry] = []
    if origin in (None, "expert"):
        entries += [_entry(p, "expert") for p in sorted(LIBRARY_DIR.glob("*.py")) if not p.name.startswith("_")]
    if origin in (None, "user"):
        udir = Path(user_dir).expanduser() if user_dir is not None else user_library_dir()
        if udir.is_dir():
            entries += [_entry(p, "user") for p in sorted(udir.glob("*.py")) if not p.name.startswith(("_", "."))]
    return entries


def get_program(name: str, user_dir: str | Path | None = None) -> LibraryEntry:
    """The program called ``name`` (``Hopper-Hop``, ``Hopper-Hop.py`` or a task id's short form).

    Raises:
        LibraryError: no such program; the message lists the closest names.
    """
    import difflib

    entries = list_programs(user_dir=user_dir)
    key = name.removeprefix("rewardgym/").removesuffix(".py")
    key = re.sub(r"-v\d+$", "", key)
    for e in entries:
        if e.name == key:
            return e
    lowered = [e for e in entries if e.name.lower() == key.lower()]
    if lowered:
        return lowered[0]
    close = difflib.get_close_matches(key, [e.name for e in entries], n=5, cutoff=0.4)
    hint = f"closest: {', '.join(close)}" if close else "run `rewardgym library list`"
    raise LibraryError(f"no library program named {name!r}; {hint}")


def add_program(program: str | Path, task_id: str, metadata: Mapping[str, Any] | None = None,
                name: str | None = None, user_dir: str | Path | None = None, overwrite: bool = False) -> LibraryEntry:
    """Validate ``program`` against ``task_id``'s view and store it in the user library.

    Args:
        program: a path (``Path``, or a one-line string naming an existing file) or the
            program's source text.
        task_id: the task it rewards (short forms accepted).
        metadata: stored in the ``.json`` sidecar (e.g. ``instruction``, ``success_rate``,
            ``run_dir``); ``task_id`` and ``created`` are added.
        name: file stem (default ``<Family>-<Task>-<sha256[:8] of the source>``).
        user_dir: the user library (default :func:`user_library_dir`).
        overwrite: replace an existing user program of that name.

    Raises:
        rewardgym.rewards.sandbox.ProgramRejected: the program breaks a sandbox rule.
        LibraryError: bad name, a clash with an expert program, or an existing program.
    """
    from rewardgym.envs.registry import get_task
    from rewardgym.rewards.prelude import prelude_namespace
    from rewardgym.rewards.sandbox import validate_source

    if isinstance(program, Path) or ("\n" not in program and program.endswith(".py") and Path(program).is_file()):
        source, origin_file = Path(program).read_text(encoding="utf-8"), str(program)
    else:
        source, origin_file = str(program), None
    task = get_task(task_id)
    name = name or f"{task.short_name}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"
    name = name.removesuffix(".py")
    if not _NAME_RE.match(name):
        raise LibraryError(f"bad library name {name!r}: letters, digits, '_', '-', '.' only (at most 100)")
    if any(e.name == name for e in list_programs("expert")):
        raise LibraryError(f"{name!r} is the name of an expert program; choose another name")
    validate_source(source, f"{name}.py", allowed_globals=set(prelude_namespace("numpy")),
                    view_fields=list(task.view.fields))
    udir = Path(user_dir).expanduser() if user_dir is not None else user_library_dir()
    path = udir / f"{name}.py"
    if path.exists() and not overwrite:
        raise LibraryError(f"{path} exists; pass overwrite=True (or another name)")
    meta = dict(metadata or {})
    meta.update({"task_id": task.id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if origin_file:
        meta.setdefault("source_file", origin_file)
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")
    atomic_write_text(path, source if source.endswith("\n") else source + "\n")
    return _entry(path, "user")


# -- retrieval ----------------------------------------------------------------------------
def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ing", "ed") and len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "ls":
                word = word[:-1]  # running -> run, hopped -> hop
            break
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens of ``text`` (snake_case and CamelCase split, stopwords dropped)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    words = re.findall(r"[a-z]+", text.lower().replace("_", " "))
    return [_stem(w) for w in words if len(w) > 1 and w not in _STOPWORDS]


def _program_names(source: str) -> list[str]:
    """State fields (``state.x``) and string dict keys (term names) a program uses."""
    fields = re.findall(r"\bstate\.(?:prev\.)?([a-z_][a-z0-9_]*)", source)
    terms = re.findall(r"[\"']([a-z_][a-z0-9_]*)[\"']\s*:", source)
    return [f for f in fields if f not in ("prev", "batch_size")] + terms


def document(entry: LibraryEntry) -> str:
    """The text an entry is indexed by (see the module docstring)."""
    task = _task_for(entry.task_id)
    parts = [entry.doc, entry.name.replace("-", " "), entry.family or "",
             task.instruction if task else "", str(entry.metadata.get("instruction", "")),
             " ".join(_program_names(entry.source()))]
    return "\n".join(p for p in parts if p)


def _tfidf(docs: list[list[str]], query: list[str]) -> np.ndarray:
    """Cosine similarity (n_docs,) of the query to each document under TF-IDF weights."""
    vocab = {t: i for i, t in enumerate(sorted({t for d in docs for t in d}))}
    n = len(docs)
    tf = np.zeros((n, len(vocab)))
    for row, d in enumerate(docs):
        for t in d:
            tf[row, vocab[t]] += 1.0
    df = np.count_nonzero(tf, axis=0)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    weights = np.where(tf > 0, 1.0 + np.log(np.maximum(tf, 1.0)), 0.0) * idf
    weights /= np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
    q = np.zeros(len(vocab))
    for t in query:
        if t in vocab:
            q[vocab[t]] += 1.0
    q = np.where(q > 0, 1.0 + np.log(np.maximum(q, 1.0)), 0.0) * idf
    norm = np.linalg.norm(q)
    return weights @ q / norm if norm > 0 else np.zeros(n)


@dataclass(frozen=True)
class Scored:
    """A retrieval result: the entry, its final score, and the cosine part of it."""

    entry: LibraryEntry
    score: float
    similarity: float


def rank(instruction: str, task: TaskSpec | str | None = None, entries: Sequence[LibraryEntry] | None = None,
         include_own_expert: bool = False, user_dir: str | Path | None = None) -> list[Scored]:
    """Every candidate, best first: TF-IDF cosine + :data:`SAME_VIEW_BONUS` for the task's view."""
    if isinstance(task, str):
        from rewardgym.envs.registry import get_task

        task = get_task(task)
    pool = list(entries) if entries is not None else list_programs(user_dir=user_dir)
    if task is not None and not include_own_expert:
        pool = [e for e in pool if not (e.origin == "expert" and e.task_id == task.id)]
    if not pool:
        return []
    sims = _tfidf([tokenize(document(e)) for e in pool], tokenize(instruction))
    bonus = np.array([SAME_VIEW_BONUS if task is not None and e.view == task.view.name else 0.0 for e in pool])
    scores = sims + bonus
    order = sorted(range(len(pool)), key=lambda i: (-scores[i], pool[i].origin != "expert", pool[i].name))
    return [Scored(pool[i], float(scores[i]), float(sims[i])) for i in order]


def retrieve(instruction: str, task: TaskSpec | str | None = None, k: int = 3,
             include_own_expert: bool = False, user_dir: str | Path | None = None) -> list[LibraryEntry]:
    """The ``k`` library programs most similar to ``instruction`` (few-shot examples).

    Args:
        instruction: the behaviour to reward.
        task: the target task (id or spec); programs for tasks sharing its state view are
            preferred, and its own expert is excluded unless ``include_own_expert``.
        k: how many.
        include_own_expert: also consider the target task's expert program.
        user_dir: the user library (default :func:`user_library_dir`).
    """
    if k < 0 or not math.isfinite(k):
        raise ValueError(f"k must be >= 0, got {k}")
    return [s.entry for s in rank(instruction, task, include_own_expert=include_own_expert,
                                  user_dir=user_dir)[:k]]
