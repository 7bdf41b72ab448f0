"""LLM client for reward synthesis: any OpenAI-compatible chat endpoint, with a cache,
a JSONL transcript, bounded retries and budget caps.

:class:`LLMClient` wraps the official ``openai`` package (``openai.OpenAI(...)``,
``client.chat.completions.create``) and is what the synthesis loop (Text2Reward, Xie et
al., 2024; Eureka, Ma et al., 2024; Auto MC-Reward, Li et al., 2024) talks to.

Configuration (arguments win over environment variables):

====================  ==========================  ==========================================
what                  argument                    environment
====================  ==========================  ==========================================
endpoint              ``base_url``                ``OPENAI_BASE_URL`` (e.g. ``http://localhost:8000/v1``)
key                   ``api_key``                 ``OPENAI_API_KEY``
model                 ``model``                   ``REWARDGYM_LLM_MODEL``
cache directory       ``cache_dir``               ``REWARDGYM_LLM_CACHE`` (default ``~/.cache/rewardgym/llm``)
context window        ``context_size``            ``REWARDGYM_LLM_CONTEXT`` (tokens; else learnt, see below)
====================  ==========================  ==========================================

With neither a base URL nor a key the client refuses to start (:class:`LLMConfigError`
naming the option and the variable). With a base URL and no key, the placeholder key
``"EMPTY"`` is sent (the convention of local servers such as vLLM, which ignore it); a
server that does want a key answers 401, reported as :class:`LLMAuthError`.

Design decisions
----------------
* **Retries: our own loop, the openai client's disabled** (``max_retries=0``). The SDK's
  retry loop does the right kind of thing (exponential back-off with jitter, honours
  ``Retry-After``) but its delays are module constants (0.5 s doubling to 8 s), its
  attempts are invisible to us, and it cannot stop at a wall-time budget. Our loop
  retries 429, 408, 409, 5xx, connection errors and timeouts up to ``max_retries``
  times; the delay is ``Retry-After`` (``retry-after-ms``, seconds, or an HTTP date) when
  the server sends one and it is at most ``max_retry_after_s`` (a longer one fails at
  once: a synthesis run should not sleep for an hour), else ``min(backoff_max_s,
  backoff_initial_s * 2**attempt)`` with "equal jitter" (uniformly in [d/2, d]), so
  parallel clients de-synchronise but never retry at once. Every failed attempt is
  recorded in the transcript entry of its request.
* **No retry** for a request the server calls invalid, even under a 5xx status (llama-cpp-python
  answers a request validation error with HTTP 500), for 401/403 (:class:`LLMAuthError`, naming the base URL and model), for a
  refused model (404, or 400 whose message says the model is unknown:
  :class:`LLMModelError`, listing the models the server does serve when ``/models``
  answers), or any other 4xx (:class:`LLMRequestError`: retrying the same request cannot
  help).
* **Cache.** A request is keyed by the sha256 of its canonical JSON (endpoint, model,
  messages, sampling parameters, sample index; sorted keys, no whitespace). The endpoint
  (base URL) is part of the key: a reply one server gave is never served as another
  server's, so a run against a server you do not control cannot put replies in front of
  your later runs. The key (credential) is not part of it and never stored. Entries are one JSON file each, ``cache_dir/<key[:2]>/<key>.json``, written to a
  temporary file and ``os.replace``-d (atomic on POSIX), so an interrupted run never
  leaves a torn entry and a resumed or repeated run pays nothing for requests it already
  made. Cache hits cost no budget. To draw *fresh* samples for the same prompt, change
  ``seed``.
* **K samples.** Many OpenAI-compatible servers ignore ``n > 1`` (and OpenAI bills it as
  K completions anyway), so :meth:`LLMClient.sample` makes K requests, sample ``i`` with
  ``seed = seed + i`` and ``sample_index = i`` in the cache key: the K samples are K cache
  entries and differ on servers that honour ``seed`` (at ``temperature > 0`` they differ
  anyway). They run on up to ``max_workers`` threads.
* **Bounded generations.** Every request carries ``max_tokens`` (default
  :data:`DEFAULT_MAX_TOKENS`), so a reply that runs on cannot outlast the timeout forever.
  A reply the server cut there (``finish_reason == "length"``) is a normal
  :class:`Completion` with ``truncated`` set; callers say so ("the reply was cut at N
  tokens"). A retried request is sent with a different ``seed`` (``seed + RETRY_SEED_STEP *
  attempt``) so it is not the identical request again; the cache key stays that of the
  request as asked. Time-outs are retried at most ``max_timeouts - 1`` times: a reply that
  did not fit in ``timeout_s`` once will usually not fit the next time either, so the error
  says which option to change, with the server's observed speed (tokens/s) when known.
* **Time limits that match the server.** With ``timeout_s`` given (``--llm-timeout``) every
  attempt gets exactly that. Without it the limit is learnt: the first requests get
  :data:`FIRST_TIMEOUT_S`; once replies have come back, the server's speed (completion tokens
  per second of replies answered at the first attempt, prompt time included, so it errs
  slow; a run's earlier processes count, from its transcript) sets each request's limit
  from its reply cap: ``TIMEOUT_SAFETY * max_tokens / speed + TIMEOUT_SLACK_S``, at least
  :data:`MIN_TIMEOUT_S`. A time-out is retried once, and in the learnt mode with twice the
  limit (llama.cpp keeps generating the abandoned reply, so the retry waits behind it). The
  final :class:`LLMTimeoutError` names the option and the limit it advises.
* **Context window.** ``context_size`` (tokens) comes from the argument, the environment,
  or :meth:`LLMClient.context_window`, which asks ``GET /models`` for the fields servers use
  (vLLM ``max_model_len``, llama.cpp ``meta.n_ctx``, LM Studio ``max_context_length``,
  OpenRouter ``context_length``). A refusal because the prompt is too long is a
  :class:`ContextLengthError` carrying the window and the prompt size when the message
  gives them (the formats of OpenAI, vLLM, llama.cpp and llama-cpp-python are parsed); the
  client records the window in ``context_size`` so the caller can fit its prompt and ask
  again. :func:`estimate_tokens` is the conservative estimate used for fitting (3 characters
  per token), calibrated by the server's own counts once it has answered: the prompt
  characters per ``usage.prompt_tokens`` of its replies (a run's earlier processes count, from
  the transcript), times :data:`CALIBRATION_MARGIN` (:meth:`LLMClient.fitting_chars_per_token`).
* **Structured output.** :meth:`LLMClient.complete_json` asks for a JSON object that
  follows a JSON schema, with the first form the server accepts: OpenAI's
  ``response_format={"type": "json_schema", ...}`` (OpenAI, vLLM, llama.cpp, Ollama), then
  ``{"type": "json_object", "schema": ...}`` (llama-cpp-python's grammar form), then none
  (the schema is in the prompt and the reply is parsed leniently). The form that worked is
  kept in ``structured_mode``.
* **Budget** (:class:`Budget`): total tokens (prompt + completion, from ``usage``; a reply
  without ``usage`` is counted as ``ceil(chars / 4)``), number of requests sent (failed ones
  included, retries and cache hits not) and wall time (``wall_offset_s`` + seconds since
  the client was created). A run that spans several processes starts its client from the
  run's transcript (:func:`transcript_usage`), so its budget and cost are the run's. A request is
  refused with :class:`BudgetExceeded` *before* it is sent when a cap is already reached;
  each attempt's timeout and each back-off sleep are cut to the wall time left.
* **Transcript.** One JSON line per request (cached or not) is appended to
  ``transcript_path`` (default ``run_dir/llm_transcript.jsonl``): ``time`` (UTC ISO),
  ``key``, ``model``, ``base_url``, ``messages``, ``params``, ``sample_index``, ``reply``,
  ``finish_reason``, ``usage`` (``prompt_tokens``, ``completion_tokens``,
  ``total_tokens``), ``latency_s`` (also for a failed request: the time it took),
  ``cached``, ``attempts``, ``seeds`` (the seed of each attempt), ``retry_errors`` and
  ``error`` (null on success).

Size: above 600 lines because one client class and the policies it applies to every request
(cache, transcript, retries, budgets, context window).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import openai

from rewardgym.files import atomic_write_text

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"
ENV_MODEL = "REWARDGYM_LLM_MODEL"
ENV_CACHE = "REWARDGYM_LLM_CACHE"
PLACEHOLDER_KEY = "EMPTY"
DEFAULT_CACHE_DIR = Path("~/.cache/rewardgym/llm")
ENV_CONTEXT = "REWARDGYM_LLM_CONTEXT"
TRANSCRIPT_NAME = "llm_transcript.jsonl"
DEFAULT_MAX_TOKENS = 2048
"""Reply cap (``max_tokens``) of every request unless the caller gives another."""
FIRST_TIMEOUT_S = 300.0
"""Seconds per attempt before the server's speed is known (no ``timeout_s`` given)."""
MIN_TIMEOUT_S = 120.0
"""Shortest learnt limit per attempt: the speed is learnt from whole replies, and a first reply
whose prompt the server had cached looks fast (llama.cpp at 2,048 tokens: 14.6 tokens/s learnt,
then an uncached NetHack prompt on a busy machine took more than the 54 s that implied)."""
TIMEOUT_SAFETY = 2.0
"""A learnt limit allows this many times the expected generation time of a full reply."""
TIMEOUT_SLACK_S = 15.0
"""Seconds a learnt limit adds for connecting and queueing."""
RETRY_SEED_STEP = 100_003
"""A retry ``k`` is sent with ``seed + RETRY_SEED_STEP * k`` (0 for ``seed`` when none)."""

_RETRY_STATUSES = frozenset({408, 409, 429})
_MODEL_REFUSED_WORDS = ("not found", "does not exist", "unknown model", "invalid model", "no such model",
                        "not a valid model", "model_not_found", "is not served", "not available")


# -- errors ---------------------------------------------------------------------------------
class LLMError(RuntimeError):
    """Base class of the client's errors."""


class LLMConfigError(LLMError):
    """No endpoint or no model configured (the message names the option and the variable)."""


class LLMAuthError(LLMError):
    """The server refused the key (401/403). Not retried."""


class LLMModelError(LLMError):
    """The server does not serve the requested model (404, or 400 "model not found"). Not retried."""


class LLMRequestError(LLMError):
    """The server rejected the request (another 4xx, e.g. context too long). Not retried."""


class ContextLengthError(LLMRequestError):
    """The server refused the request as longer than its context window (not retried as is).

    Attributes:
        n_ctx: the window in tokens, when the server's message or body says it.
        prompt_tokens: the prompt's size in tokens, when said.
    """

    def __init__(self, message: str, n_ctx: int | None = None, prompt_tokens: int | None = None):
        super().__init__(message)
        self.n_ctx = n_ctx
        self.prompt_tokens = prompt_tokens


class LLMUnavailableError(LLMError):
    """Retries exhausted on 429/5xx/connection errors/timeouts, or a Retry-After too long to wait."""


class LLMTimeoutError(LLMUnavailableError):
    """Every attempt allowed for a time-out timed out.

    Attributes:
        option: ``"--llm-timeout"``.
        limit: the limit per attempt it advises (seconds), larger than the one that failed.
    """

    def __init__(self, message: str, option: str = "--llm-timeout", limit: float | None = None):
        super().__init__(message)
        self.option = option
        self.limit = limit


class BudgetExceeded(LLMError):
    """A budget cap (tokens, requests, wall time) is reached; the message says which.

    Attributes:
        option: the command-line option of the cap (``--max-tokens`` ...).
        limit: the cap's value.
    """

    def __init__(self, message: str, option: str = "", limit: float | None = None):
        super().__init__(message)
        self.option = option
        self.limit = limit


# -- configuration and results -----------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """Caps for one client (None: no cap).

    Attributes:
        max_total_tokens: prompt + completion tokens over all requests sent.
        max_requests: requests sent to the server (cache hits and retries not counted).
        max_wall_s: seconds since the client was created.
    """

    max_total_tokens: int | None = None
    max_requests: int | None = None
    max_wall_s: float | None = None


@dataclass(frozen=True)
class Completion:
    """One reply.

    Attributes:
        text: the assistant message.
        prompt_tokens, completion_tokens: from the server's ``usage`` (estimated as
            ``ceil(chars / 4)`` when the server sends none; ``usage_estimated`` then).
        latency_s: seconds from the first attempt to the reply (0 for a cache hit).
        cached: answered from the cache.
        key: the request's cache key (sha256 hex).
        finish_reason: the server's ``finish_reason`` (``"length"``: truncated).
        model: the model that answered.
        attempts: HTTP attempts made (0 for a cache hit).
        sample_index: index of this sample among K (see :meth:`LLMClient.sample`).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached: bool
    key: str
    finish_reason: str | None = None
    model: str = ""
    attempts: int = 1
    sample_index: int = 0
    usage_estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def truncated(self) -> bool:
        """The server stopped at ``max_tokens`` (``finish_reason == "length"``)."""
        return self.finish_reason == "length"

    def truncation_note(self) -> str:
        """``"the reply was cut at N tokens"`` for a truncated reply, else ``""``."""
        return f"the reply was cut at {self.completion_tokens} tokens (max_tokens)" if self.truncated else ""


@dataclass
class Usage:
    """Running totals of one client (what counts against the :class:`Budget`)."""

    requests: int = 0
    attempts: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def request_key(model: str, messages: Sequence[Message], params: Mapping[str, Any], sample_index: int = 0,
                endpoint: str | None = None) -> str:
    """sha256 hex of the canonical JSON of a request to ``endpoint`` (the cache key; see the module docstring)."""
    canonical = json.dumps({"endpoint": endpoint, "model": model, "messages": [dict(m) for m in messages],
                            "params": {k: v for k, v in params.items() if v is not None},
                            "sample_index": sample_index},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date), or None."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


CHARS_PER_TOKEN = 3.0
"""Characters per token assumed by :func:`estimate_tokens` until the server has counted a
prompt. Large BPE vocabularies give 3.5-4.5 on code and English; a small one gives less:
SmolLM2's (49k tokens, llama.cpp) gave 2.9-3.4 on rewardgym's prompts (edit prompts, mostly
code, 2.9), so fitting keeps a margin (``CONTEXT_MARGIN`` in the prompts) and calibrates on
the server's own counts (:meth:`LLMClient.fitting_chars_per_token`)."""


CALIBRATION_MARGIN = 0.95
"""Fitting assumes this fraction of the characters per token the server's own counts gave
(prompts differ: SmolLM2 gave 2.9 on edit prompts, 3.2-3.4 on designer ones; the server's
counts include its chat template, which the ratio thereby already charges to the text)."""
MAX_CHARS_PER_TOKEN = 6.0
"""Largest ratio fitting assumes, whatever a server reports."""


def estimate_tokens(messages: Sequence[Message] | str, chars_per_token: float | None = None) -> int:
    """Conservative token count of a prompt: ``ceil(chars / 3)`` + 8 per message (role, framing);
    ``chars_per_token`` replaces the 3 (:meth:`LLMClient.fitting_chars_per_token`)."""
    ratio = chars_per_token or CHARS_PER_TOKEN
    if isinstance(messages, str):
        return math.ceil(len(messages) / ratio)
    return sum(math.ceil(len(str(m["content"])) / ratio) + 8 for m in messages) + 8


def transcript_records(path: str | Path) -> list[dict[str, Any]]:
    """The request records of a transcript file (none if it does not exist); a line torn by a
    crash mid-write, or one that is not a record, is skipped. Read once per resume."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def transcript_usage(records: list[dict[str, Any]]) -> tuple[Usage, float]:
    """Usage in a transcript's records (requests sent, tokens, errors) and the seconds spent in
    requests (sum of ``latency_s``): what a run spent before this process."""
    usage, seconds = Usage(), 0.0
    for rec in records:
        if rec.get("cached"):
            usage.cache_hits += 1
            continue
        attempts = int(rec.get("attempts") or 0)
        if attempts == 0:  # refused by the budget before sending
            continue
        usage.requests += 1
        usage.attempts += attempts
        if rec.get("error"):
            usage.errors += 1
        u = rec.get("usage") or {}
        usage.prompt_tokens += int(u.get("prompt_tokens") or 0)
        usage.completion_tokens += int(u.get("completion_tokens") or 0)
        seconds += float(rec.get("latency_s") or 0.0)
    return usage, seconds


def _answered(records: list[dict[str, Any]], base_url: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(record, usage)`` of the requests ``base_url`` answered (not cached, no error)."""
    for rec in records:
        if rec.get("cached") or rec.get("error") or rec.get("base_url") != base_url:
            continue
        yield rec, rec.get("usage") if isinstance(rec.get("usage"), dict) else {}


def transcript_prompt_counts(records: list[dict[str, Any]], base_url: str) -> tuple[int, int]:
    """``(prompt characters, prompt tokens)`` of the requests ``base_url`` answered with its own
    ``usage``, in a transcript's records (what calibrates :func:`estimate_tokens`)."""
    chars, tokens = 0, 0
    for rec, usage in _answered(records, base_url):
        n, messages = usage.get("prompt_tokens"), rec.get("messages")
        if usage.get("estimated") or not isinstance(n, int) or n <= 0 or not isinstance(messages, list):
            continue
        chars += sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
        tokens += n
    return chars, tokens


def transcript_speed(records: list[dict[str, Any]], base_url: str) -> tuple[int, float]:
    """``(completion tokens, seconds)`` of the replies ``base_url`` gave at the first attempt, in a
    transcript's records (the speed an earlier process of the run measured)."""
    tokens, seconds = 0, 0.0
    for rec, usage in _answered(records, base_url):
        n, latency = usage.get("completion_tokens"), rec.get("latency_s")
        if rec.get("attempts") == 1 and isinstance(n, int) and n > 0 and isinstance(latency, (int, float)) \
                and 0 < latency < 86_400:
            tokens, seconds = tokens + n, seconds + float(latency)
    return tokens, seconds


_CONTEXT_WORDS = ("context length", "context window", "context size", "maximum context", "context_length",
                  "exceed_context", "too many tokens", "prompt is too long", "input is too long")
_N_CTX_PATTERNS = (r"maximum context length is (\d+)", r"context window of (\d+)",
                   r"available context size \((\d+)", r"context length of (?:only )?(\d+)",
                   r"n_ctx[\"':= ]+(\d+)", r"context (?:window|length|size)[^0-9.]{0,24}(\d{3,})")
_PROMPT_PATTERNS = (r"requested tokens \((\d+)\)", r"request \((\d+) tokens\)", r"resulted in (\d+) tokens",
                    r"you requested (\d+) tokens", r"has (\d+) input tokens", r"n_prompt_tokens[\"':= ]+(\d+)",
                    r"keep the first (\d+) tokens")


def parse_context_refusal(text: str) -> tuple[bool, int | None, int | None]:
    """``(is_context_refusal, n_ctx, prompt_tokens)`` from a server's error text (see the module docstring)."""
    low = text.lower()
    if not any(w in low for w in _CONTEXT_WORDS):
        return False, None, None

    def first(patterns: tuple[str, ...]) -> int | None:
        for pattern in patterns:
            m = re.search(pattern, low)
            if m:
                return int(m.group(1))
        return None

    return True, first(_N_CTX_PATTERNS), first(_PROMPT_PATTERNS)


def _summarise_errors(errors: list[str]) -> str:
    """The attempts' errors in order, each distinct one once with its count: the first cause is
    kept and 'Connection refused' is not repeated four times."""
    counts: dict[str, int] = {}
    for error in errors:
        counts[error] = counts.get(error, 0) + 1
    return "; ".join(f"{error} (x{n})" if n > 1 else error for error, n in counts.items())


class LLMClient:
    """Chat completions from an OpenAI-compatible endpoint, cached, logged, retried, budgeted.

    Args:
        model: model name (default ``$REWARDGYM_LLM_MODEL``).
        base_url: API root, e.g. ``http://localhost:8000/v1`` (default ``$OPENAI_BASE_URL``;
            None with a key: api.openai.com).
        api_key: the key (default ``$OPENAI_API_KEY``; ``"EMPTY"`` with a base URL and no key).
        run_dir: directory of the transcript (``run_dir/llm_transcript.jsonl``).
        transcript_path: explicit transcript file (overrides ``run_dir``); None and no
            ``run_dir``: no transcript.
        cache_dir: cache directory (default ``$REWARDGYM_LLM_CACHE`` or
            ``~/.cache/rewardgym/llm``); ``False`` disables the cache.
        timeout_s: seconds per HTTP attempt (connect timeout ``min(10, timeout_s)``); None:
            learnt from the server's speed (module docstring, "Time limits").
        max_retries: retries after the first attempt on retryable errors.
        backoff_initial_s, backoff_max_s: exponential back-off, seconds.
        max_retry_after_s: longest ``Retry-After`` the client waits; longer fails at once.
        budget: caps (:class:`Budget`).
        temperature, max_tokens: default sampling parameters (per-call arguments win);
            ``max_tokens`` caps every reply (default :data:`DEFAULT_MAX_TOKENS`).
        max_timeouts: attempts of one request that may time out before it fails.
        context_size: the model's context window in tokens (default ``$REWARDGYM_LLM_CONTEXT``;
            None: unknown until :meth:`context_window` or a refusal tells).
        wall_offset_s: seconds a run already spent before this client (wall-time budget).
        on_retry: ``on_retry(message)`` for each failed attempt that will be retried.

    Raises:
        LLMConfigError: no model, or neither a base URL nor a key.
    """

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
                 run_dir: str | Path | None = None, transcript_path: str | Path | None = None,
                 cache_dir: str | Path | bool | None = None, timeout_s: float | None = None, max_retries: int = 4,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0, max_retry_after_s: float = 120.0,
                 budget: Budget | None = None, temperature: float | None = 1.0,
                 max_tokens: int | None = DEFAULT_MAX_TOKENS, max_timeouts: int = 2,
                 context_size: int | None = None, wall_offset_s: float = 0.0,
                 on_retry: Callable[[str], None] | None = None):
        model = model or os.environ.get(ENV_MODEL) or None
        base_url = base_url or os.environ.get(ENV_BASE_URL) or None
        api_key = api_key or os.environ.get(ENV_API_KEY) or None
        if base_url is None and api_key is None:
            raise LLMConfigError(
                "no LLM endpoint configured: pass --base-url (or set OPENAI_BASE_URL) to an OpenAI-compatible "
                "server such as http://localhost:8000/v1, or set OPENAI_API_KEY to use api.openai.com")
        if model is None:
            raise LLMConfigError(f"no LLM model configured: pass --model (or set {ENV_MODEL}), "
                                 f"e.g. {ENV_MODEL}=gpt-4o")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_timeouts < 1:
            raise ValueError(f"max_timeouts must be >= 1, got {max_timeouts}")
        env_context = os.environ.get(ENV_CONTEXT)
        if context_size is None and env_context:
            try:
                context_size = int(env_context)
            except ValueError:
                raise LLMConfigError(f"{ENV_CONTEXT}={env_context!r} is not a number of tokens") from None
        if context_size is not None and context_size < 256:
            raise ValueError(f"context_size must be at least 256 tokens, got {context_size}")
        self.model = model
        self.api_key_given = api_key is not None
        self.timeout_fixed = timeout_s is not None
        self.timeout_s = float(timeout_s) if timeout_s is not None else FIRST_TIMEOUT_S
        self.max_retries = int(max_retries)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.budget = budget or Budget()
        self.defaults = {"temperature": temperature, "max_tokens": max_tokens}
        self.max_timeouts = int(max_timeouts)
        self.context_size: int | None = context_size
        self.context_source = "given" if context_size is not None else None
        self.structured_mode: str | None = None  # json_schema | json_object | none, once known
        self.on_retry = on_retry
        self.wall_offset_s = float(wall_offset_s)
        self._speed: tuple[int, float] = (0, 0.0)  # completion tokens, seconds of successful replies
        self._prompt_counts: tuple[int, int] = (0, 0)  # prompt characters, the server's prompt tokens
        self._refused_forms: set[str] = set()  # structured-output forms this server refused
        self._openai = openai.OpenAI(base_url=base_url, api_key=api_key or PLACEHOLDER_KEY, max_retries=0,
                                     timeout=openai.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)))
        self.base_url = str(self._openai.base_url).rstrip("/")
        if transcript_path is not None:
            self.transcript_path: Path | None = Path(transcript_path)
        elif run_dir is not None:
            self.transcript_path = Path(run_dir) / TRANSCRIPT_NAME
        else:
            self.transcript_path = None
        if cache_dir is False:
            self.cache_dir: Path | None = None
        elif cache_dir is None or cache_dir is True:
            self.cache_dir = Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE_DIR).expanduser()
        else:
            self.cache_dir = Path(cache_dir).expanduser()
        self.usage = Usage()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._reserved = 0  # requests admitted by the budget but not finished

    # -- public API -----------------------------------------------------------------------
    def complete(self, messages: Sequence[Message], *, temperature: float | None = None,
                 max_tokens: int | None = None, seed: int | None = None, sample_index: int = 0,
                 **params: Any) -> Completion:
        """One chat completion for ``messages`` (cache first, then the server).

        Args:
            messages: the conversation, ``[{"role": ..., "content": ...}, ...]``.
            temperature, max_tokens: override the client's defaults.
            seed: sent to the server (servers that honour it sample deterministically).
            sample_index: which of K samples this is (part of the cache key).
            **params: further ``chat.completions.create`` parameters (``top_p`` ...).

        Raises:
            LLMAuthError, LLMModelError, LLMRequestError: refused, not retried.
            LLMUnavailableError: retries exhausted.
            BudgetExceeded: a cap is reached (checked before sending).
        """
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        call_params = {"temperature": self.defaults["temperature"] if temperature is None else temperature,
                       "max_tokens": self.defaults["max_tokens"] if max_tokens is None else max_tokens,
                       "seed": seed, **params}
        call_params = {k: v for k, v in call_params.items() if v is not None}
        key = request_key(self.model, messages, call_params, sample_index, endpoint=self.base_url)
        record: dict[str, Any] = {"time": _now_iso(), "key": key, "model": self.model, "base_url": self.base_url,
                                  "messages": messages, "params": call_params, "sample_index": sample_index}
        cached = self._cache_get(key)
        if cached is not None:
            with self._lock:
                self.usage.cache_hits += 1
            usage = cached.get("usage") or {}
            result = Completion(text=cached["reply"], prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                completion_tokens=int(usage.get("completion_tokens", 0)), latency_s=0.0,
                                cached=True, key=key, finish_reason=cached.get("finish_reason"),
                                model=cached.get("model", self.model), attempts=0, sample_index=sample_index)
            self._log(record, result, {"attempts": 0, "retry_errors": [], "seeds": []}, None)
            return result
        trace: dict[str, Any] = {"attempts": 0, "retry_errors": [], "seeds": [], "start": time.monotonic()}
        try:
            self._admit()
            try:
                result = self._send(messages, call_params, key, sample_index, trace)
            finally:  # a request that failed after reaching the server counts too
                with self._lock:
                    self._reserved -= 1
                    self.usage.requests += 1
        except LLMError as exc:
            with self._lock:
                self.usage.errors += 1
            self._log(record, None, trace, exc)
            raise
        except BaseException as exc:  # Ctrl-C during a request: the transcript still says so
            self._log(record, None, trace, exc)
            raise
        self._cache_put(key, record, result)
        self._log(record, result, trace, None)
        if not result.usage_estimated and result.prompt_tokens > 0:
            with self._lock:
                chars = sum(len(m["content"]) for m in messages)
                self._prompt_counts = (self._prompt_counts[0] + chars, self._prompt_counts[1] + result.prompt_tokens)
        return result

    def sample(self, messages: Sequence[Message], k: int, *, seed: int = 0, max_workers: int = 1,
               **kwargs: Any) -> list[Completion]:
        """K samples for the same prompt: K requests, sample ``i`` with ``seed + i``.

        See the module docstring ("K samples"). Results are in sample order. The first
        error (budget, auth ...) is raised after the running requests finish.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if max_workers <= 1 or k == 1:
            return [self.complete(messages, seed=seed + i, sample_index=i, **kwargs) for i in range(k)]
        with ThreadPoolExecutor(max_workers=min(max_workers, k), thread_name_prefix="rewardgym-llm") as pool:
            futures = [pool.submit(self.complete, messages, seed=seed + i, sample_index=i, **kwargs)
                       for i in range(k)]
            return [f.result() for f in futures]

    def complete_json(self, messages: Sequence[Message], schema: Mapping[str, Any], *, name: str = "answer",
                      **kwargs: Any) -> Completion:
        """A reply constrained to a JSON object following ``schema``, in the first form the server
        accepts (see the module docstring, "Structured output"); the caller parses ``text``.

        A server that refuses one form (HTTP 400/422 naming ``response_format``, ``json_schema``
        or ``schema``) is asked with the next; the form that worked is kept in
        :attr:`structured_mode` for later calls.
        """
        forms = {"json_schema": {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema),
                                                                         "strict": True}},
                 "json_object": {"type": "json_object", "schema": dict(schema)},
                 "none": None}
        order = [self.structured_mode] if self.structured_mode else [m for m in forms if m not in self._refused_forms]
        for i, mode in enumerate(order):
            extra = {"response_format": forms[mode]} if forms[mode] is not None else {}
            try:
                result = self.complete(messages, **extra, **kwargs)
            except ContextLengthError:
                raise
            except LLMRequestError as exc:
                text = str(exc).lower()
                if i + 1 < len(order) and any(w in text for w in ("response_format", "json_schema", "schema",
                                                                   "grammar", "json_object")):
                    self._refused_forms.add(mode)  # not asked again, even if the next form fails otherwise
                    continue
                raise
            self.structured_mode = mode
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def context_window(self) -> int | None:
        """The context window in tokens: :attr:`context_size` if known, else what ``GET /models``
        says for this model (see the module docstring), else None. Never raises."""
        if self.context_size is not None:
            return self.context_size
        try:
            data = self._openai.models.list().data
        except (openai.APIError, ValueError, TypeError):
            return None
        entries = [m for m in data if getattr(m, "id", None) == self.model] or (list(data) if len(data) == 1 else [])
        for m in entries:
            extra = m.model_dump() if hasattr(m, "model_dump") else dict(m)
            meta = extra.get("meta") if isinstance(extra.get("meta"), dict) else {}
            for value in (extra.get("max_model_len"), meta.get("n_ctx"), extra.get("max_context_length"),
                          extra.get("context_length"), extra.get("context_window")):
                if isinstance(value, (int, float)) and value >= 256:
                    self.context_size, self.context_source = int(value), "server"
                    return self.context_size
        return None

    def learn_context(self, refusal: "ContextLengthError", prompt_estimate: int) -> int:
        """Record the window a :class:`ContextLengthError` implies and return it: the window the
        server named, else 3/4 of the refused prompt (the server's count, or ``prompt_estimate``)."""
        if refusal.n_ctx:
            n = refusal.n_ctx
        else:
            n = max(256, int(0.75 * (refusal.prompt_tokens or prompt_estimate)))
            if self.context_size is not None:
                n = min(n, int(0.75 * self.context_size))
        self.context_size, self.context_source = n, "refusal"
        return n

    def resume_from_transcript(self, path: str | Path | None = None) -> None:
        """Start the usage (budget, cost) from the records of a run's transcript (default: this
        client's), so a run continued by another process keeps one budget."""
        path = Path(path) if path is not None else self.transcript_path
        if path is not None:
            records = transcript_records(path)  # one read of the file for all three
            self.usage, _ = transcript_usage(records)
            self._speed = transcript_speed(records, self.base_url)
            self._prompt_counts = transcript_prompt_counts(records, self.base_url)

    @property
    def chars_per_token(self) -> float | None:
        """Prompt characters per token by the server's own counts (None: none counted yet)."""
        chars, tokens = self._prompt_counts
        return chars / tokens if chars and tokens else None

    def fitting_chars_per_token(self) -> float:
        """Characters per token that prompt fitting assumes: :data:`CHARS_PER_TOKEN` until the
        server has counted a prompt, then :data:`CALIBRATION_MARGIN` times its own ratio (at
        most :data:`MAX_CHARS_PER_TOKEN`; lower than 3 when its tokenizer needs more tokens)."""
        measured = self.chars_per_token
        return CHARS_PER_TOKEN if measured is None else min(MAX_CHARS_PER_TOKEN, CALIBRATION_MARGIN * measured)

    def request_timeout(self, max_tokens: int | None) -> float:
        """Seconds one attempt of a request with reply cap ``max_tokens`` may take: ``timeout_s``
        when given, else learnt from the server's speed (module docstring, "Time limits")."""
        speed = self.tokens_per_s
        if self.timeout_fixed or speed is None or not max_tokens:
            return self.timeout_s
        return max(MIN_TIMEOUT_S, TIMEOUT_SAFETY * max_tokens / speed + TIMEOUT_SLACK_S)

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per second over this client's successful replies (None: none yet)."""
        tokens, seconds = self._speed
        return tokens / seconds if tokens and seconds > 0 else None

    def list_models(self) -> list[str]:
        """Model ids the server lists at ``GET /models`` (raises the client's errors)."""
        try:
            return sorted(m.id for m in self._openai.models.list().data)
        except openai.AuthenticationError as exc:
            raise self._auth_error(exc) from None
        except openai.APIError as exc:
            raise LLMRequestError(f"{self.base_url}/models failed: {exc}") from None

    @property
    def elapsed_s(self) -> float:
        """``wall_offset_s`` + seconds since the client was created (the wall-time budget's clock)."""
        return self.wall_offset_s + time.monotonic() - self._started

    def summary(self) -> dict[str, Any]:
        """Usage totals and caps, for run reports."""
        return {"model": self.model, "base_url": self.base_url, **asdict(self.usage),
                "total_tokens": self.usage.total_tokens, "elapsed_s": round(self.elapsed_s, 3),
                "budget": asdict(self.budget), "context_size": self.context_size,
                "context_source": self.context_source, "structured_mode": self.structured_mode,
                "tokens_per_s": self.tokens_per_s, "chars_per_token": self.chars_per_token}

    # -- budget -----------------------------------------------------------------------------
    def _wall_left(self) -> float | None:
        if self.budget.max_wall_s is None:
            return None
        return self.budget.max_wall_s - self.elapsed_s

    def _admit(self) -> None:
        b = self.budget
        with self._lock:
            sent = self.usage.requests + self._reserved
            if b.max_requests is not None and sent >= b.max_requests:
                raise BudgetExceeded(f"LLM budget exceeded: {sent} of max {b.max_requests} requests already "
                                     f"sent (raise --max-requests)", "--max-requests", b.max_requests)
            if b.max_total_tokens is not None and self.usage.total_tokens >= b.max_total_tokens:
                raise BudgetExceeded(f"LLM budget exceeded: {self.usage.total_tokens} tokens used of max "
                                     f"{b.max_total_tokens} (raise --max-tokens)", "--max-tokens", b.max_total_tokens)
            left = self._wall_left()
            if left is not None and left <= 0:
                raise BudgetExceeded(f"LLM budget exceeded: {self.elapsed_s:.1f} s elapsed of max "
                                     f"{b.max_wall_s:g} s wall time (raise --max-wall-time)", "--max-wall-time",
                                     b.max_wall_s)
            self._reserved += 1

    # -- sending ------------------------------------------------------------------------------
    def _send(self, messages: list[dict], params: dict[str, Any], key: str, sample_index: int,
              trace: dict[str, Any]) -> Completion:
        """Send with retries; ``trace`` collects ``attempts``, ``seeds`` and ``retry_errors``."""
        retry_errors: list[str] = trace["retry_errors"]
        start = time.monotonic()
        attempt = 0
        timeouts = 0
        while True:
            timeout = self.request_timeout(params.get("max_tokens"))
            if timeouts and not self.timeout_fixed:  # the retry waits behind the abandoned generation
                timeout *= 2.0
            left = self._wall_left()
            if left is not None:
                if left <= 0:
                    raise BudgetExceeded(f"LLM budget exceeded: max wall time of {self.budget.max_wall_s:g} s "
                                         f"reached while retrying ({'; '.join(retry_errors[-1:])})",
                                         "--max-wall-time", self.budget.max_wall_s)
                timeout = min(timeout, left)
            with self._lock:
                self.usage.attempts += 1
            trace["attempts"] += 1
            sent = dict(params)
            if attempt:  # never the identical request again (see the module docstring)
                sent["seed"] = int(params.get("seed") or 0) + RETRY_SEED_STEP * attempt
            trace["seeds"].append(sent.get("seed"))
            try:
                response = self._openai.chat.completions.create(
                    model=self.model, messages=messages, timeout=timeout, **sent)
            except openai.AuthenticationError as exc:
                raise self._auth_error(exc) from None
            except openai.PermissionDeniedError as exc:
                raise self._auth_error(exc) from None
            except openai.APIStatusError as exc:
                status = exc.status_code
                if self._model_refused(exc):
                    raise self._model_error(exc) from None
                server_text = _server_text(exc)
                invalid = status >= 500 and "validation error" in server_text.lower()  # llama-cpp-python's 500
                if (status in _RETRY_STATUSES or status >= 500) and not invalid:
                    retry_errors.append(f"HTTP {status}: {_short(server_text)}")
                    delay = self._delay(attempt, exc.response.headers, retry_errors)
                else:
                    is_context, n_ctx, prompt_tokens = parse_context_refusal(f"{exc.code or ''} {server_text}")
                    body = exc.body if isinstance(exc.body, dict) else {}
                    body = body.get("error", body) if isinstance(body.get("error", body), dict) else body
                    n_ctx = n_ctx or _int_or_none(body.get("n_ctx"))
                    prompt_tokens = prompt_tokens or _int_or_none(body.get("n_prompt_tokens"))
                    message = (f"{self.base_url} refused the request for model {self.model!r} (HTTP {status}, "
                               f"not retried): {_short(server_text, 300)}")
                    if is_context:
                        raise ContextLengthError(message, n_ctx, prompt_tokens) from None
                    raise LLMRequestError(message) from None
            except openai.APITimeoutError:
                timeouts += 1
                retry_errors.append(f"timeout after {timeout:.3g} s")
                if timeouts >= self.max_timeouts:
                    raise self._timeout_error(timeout, timeouts, params) from None
                delay = self._delay(attempt, None, retry_errors)
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                retry_errors.append(f"connection error: {_short(str(cause))}")
                delay = self._delay(attempt, None, retry_errors)
            else:
                return self._completion(response, key, sample_index, start, attempt + 1)
            attempt += 1
            left = self._wall_left()
            if left is not None and delay >= left:
                raise BudgetExceeded(f"LLM budget exceeded: max wall time of {self.budget.max_wall_s:g} s would "
                                     f"pass during the retry back-off (last error: {retry_errors[-1]})",
                                     "--max-wall-time", self.budget.max_wall_s)
            if self.on_retry is not None:
                if retry_errors[-1].startswith("timeout"):  # time-outs have their own, smaller allowance
                    allowed = min(self.max_retries, self.max_timeouts - 1)
                    which = (f"time-out retry {timeouts} of {allowed}" + (
                        f", with a {2.0 * self.request_timeout(params.get('max_tokens')):.3g} s limit,"
                        if not self.timeout_fixed else ""))
                else:
                    which = f"retry {attempt} of {self.max_retries}"
                self.on_retry(f"LLM request failed ({retry_errors[-1]}); {which} in {delay:.1f} s")
            time.sleep(delay)

    def _timeout_error(self, timeout: float, timeouts: int, params: Mapping[str, Any]) -> LLMTimeoutError:
        """The error after the last allowed time-out, with the limit it advises: enough for a full
        reply at the speed seen so far (twice the expected time), and at least twice this one."""
        cap = params.get("max_tokens")
        speed = self.tokens_per_s
        advised = 2.0 * timeout
        need = ""
        if speed and cap:
            need = (f"; at the {speed:.3g} tokens/s this server managed so far, a reply of up to {cap} tokens "
                    f"takes up to {cap / speed:.0f} s")
            advised = max(advised, TIMEOUT_SAFETY * cap / speed + TIMEOUT_SLACK_S)
        advised = float(math.ceil(advised / 10.0) * 10) if advised >= 10 else round(advised, 1)
        how = "given by --llm-timeout" if self.timeout_fixed else "learnt from the server's speed"
        return LLMTimeoutError(
            f"{self.base_url} (model {self.model!r}) sent no reply within {timeout:.3g} s in {timeouts} "
            f"attempt(s) (limit {how}){need}: raise --llm-timeout (to {advised:g}), or lower --max-reply-tokens "
            f"(now {cap})",
            "--llm-timeout", advised)

    def _delay(self, attempt: int, headers: Any, retry_errors: list[str]) -> float:
        """Back-off before the next attempt, or raise when retries are exhausted."""
        if attempt >= self.max_retries:
            raise LLMUnavailableError(
                f"{self.base_url} (model {self.model!r}) failed after {attempt + 1} attempt(s): "
                + _summarise_errors(retry_errors))
        retry_after = _retry_after_s(headers)
        if retry_after is not None:
            if retry_after > self.max_retry_after_s:
                raise LLMUnavailableError(
                    f"{self.base_url} (model {self.model!r}) asked to retry after {retry_after:.0f} s, longer than "
                    f"max_retry_after_s={self.max_retry_after_s:g} s; giving up ({retry_errors[-1]})")
            return retry_after
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** attempt)
        return base / 2.0 + random.uniform(0.0, base / 2.0)

    def _completion(self, response: Any, key: str, sample_index: int, start: float, attempts: int) -> Completion:
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice is not None and choice.message is not None else None) or ""
        usage = getattr(response, "usage", None)
        estimated = usage is None or usage.prompt_tokens is None
        if estimated:
            prompt_tokens = 0  # the prompt is known to the caller; only the reply is estimated
            completion_tokens = _estimate_tokens(text)
        else:
            prompt_tokens = int(usage.prompt_tokens or 0)
            completion_tokens = int(usage.completion_tokens or 0)
        latency = time.monotonic() - start
        with self._lock:
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            if completion_tokens and attempts == 1:
                self._speed = (self._speed[0] + completion_tokens, self._speed[1] + latency)
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_s=latency, cached=False, key=key,
                          finish_reason=getattr(choice, "finish_reason", None), model=response.model or self.model,
                          attempts=attempts, sample_index=sample_index, usage_estimated=estimated)

    # -- error classification -------------------------------------------------------------------
    @staticmethod
    def _model_refused(exc: openai.APIStatusError) -> bool:
        if exc.status_code == 404:
            return True
        if exc.status_code not in (400, 422):
            return False
        text = f"{exc.code or ''} {exc.message}".lower()
        return "model" in text and any(w in text for w in _MODEL_REFUSED_WORDS)

    def _auth_error(self, exc: openai.APIStatusError) -> LLMAuthError:
        hint = ("check OPENAI_API_KEY (or --api-key)" if self.api_key_given else
                "no key was given (sent the placeholder 'EMPTY'): set OPENAI_API_KEY (or pass --api-key)")
        return LLMAuthError(f"{self.base_url} refused the API key for model {self.model!r} "
                            f"(HTTP {exc.status_code}: {_short(_server_text(exc), 300)}); {hint}")

    def _model_error(self, exc: openai.APIStatusError) -> LLMModelError:
        served = ""
        try:
            models = self.list_models()
            served = f"; the server lists: {', '.join(models[:20])}" if models else ""
        except LLMError:
            pass
        return LLMModelError(
            f"{self.base_url} does not serve model {self.model!r} (HTTP {exc.status_code}: "
            f"{_short(_server_text(exc))}); "
            f"choose another with --model / {ENV_MODEL}, or check that the base URL is the API root "
            f"(e.g. http://host:8000/v1){served}")

    # -- cache and transcript ---------------------------------------------------------------------
    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # unreadable entry: ask again (and overwrite it)
        return entry if isinstance(entry, dict) and isinstance(entry.get("reply"), str) else None

    def _cache_put(self, key: str, record: dict[str, Any], result: Completion) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        entry = {"key": key, "model": result.model, "request": {k: record[k] for k in ("messages", "params",
                                                                                       "sample_index")},
                 "reply": result.text, "finish_reason": result.finish_reason,
                 "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
                 "created": _now_iso()}
        atomic_write_text(path, json.dumps(entry, ensure_ascii=False))

    def _log(self, record: dict[str, Any], result: Completion | None, trace: dict[str, Any],
             error: BaseException | None) -> None:
        if self.transcript_path is None:
            return
        entry = dict(record)
        entry.update({
            "reply": result.text if result else None,
            "finish_reason": result.finish_reason if result else None,
            "usage": ({"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                       "total_tokens": result.total_tokens, "estimated": result.usage_estimated}
                      if result else None),
            "latency_s": (round(result.latency_s, 4) if result else
                          round(time.monotonic() - trace["start"], 4) if "start" in trace else None),
            "cached": bool(result and result.cached),
            "attempts": trace["attempts"],
            "seeds": list(trace.get("seeds", [])),
            "retry_errors": list(trace["retry_errors"]),
            "error": f"{type(error).__name__}: {error}" if error else None,
        })
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.transcript_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.transcript_path, "a", encoding="utf-8") as fh:
                fh.write(line)

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, base_url={self.base_url!r})"


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def _server_text(exc: openai.APIStatusError) -> str:
    """The server's own error text: ``error.message`` (OpenAI form), ``detail`` (FastAPI
    servers such as llama-cpp-python), ``message``, else the raw body; else the SDK's message."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail", "msg"):
                if inner.get(key):
                    return str(inner[key])
        elif isinstance(inner, str) and inner:
            return inner
        if body.get("detail"):
            return str(body["detail"])
    elif isinstance(body, str) and body.strip():
        return body
    try:
        raw = exc.response.text
    except Exception:  # noqa: BLE001 - a streamed or closed response
        raw = ""
    return raw.strip() or exc.message


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
