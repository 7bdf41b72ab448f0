"""TEST TOOLING: a local OpenAI-compatible HTTP server that answers from scripted transcripts.

Used by rewardgym's tests (and usable by anyone testing an LLM loop offline) to exercise
:class:`rewardgym.llm.client.LLMClient`, the synthesis loop and the CLI over real
HTTP with the official ``openai`` package, without a model. It is not a model and is
never used by rewardgym at run time.

The server (stdlib :mod:`http.server` in a daemon thread, bound to ``127.0.0.1`` on a
free port) implements

* ``POST /v1/chat/completions`` (non-streaming; ``stream=true`` is refused with 400), and
* ``GET /v1/models``,

and behaves like a real endpoint where that is cheap to do for real: a request whose
``Authorization: Bearer`` key differs from ``api_key`` gets 401, a request for a model
not in ``models`` gets 404 ``model_not_found``. Token counts are ``ceil(characters / 4)``
of each message (deterministic, not a tokenizer; the usual rule of thumb for English).
Like a real server it also

* stops a reply at the request's ``max_tokens`` (``4 * max_tokens`` characters), with
  ``finish_reason: "length"``;
* with ``context_size`` set, refuses a request whose prompt tokens plus ``max_tokens``
  exceed it, with llama-cpp-python's message (HTTP 400 "Requested tokens (N) exceed
  context window of M"); ``advertise_context`` also lists it in ``GET /v1/models`` as
  vLLM does (``max_model_len``);
* accepts the ``response_format`` types in ``structured`` (default ``json_schema`` and
  ``json_object``) and refuses others with 400, as servers without that support do.

Scripts
-------
A script is a list of :class:`ScriptedResponse`. For each chat request the server picks
the **first unused entry whose ``match`` regex is found in the last user message**
(entries without ``match`` match anything), so a script is consumed in order, and a
scenario with several kinds of prompt (design, repair, reflection) can route each to its
answer by a rule on the prompt. An entry is consumed when used unless ``repeat`` is true.
When no entry is left the server answers 400 ``script exhausted`` (not retryable), so a
test that sends more requests than it scripted fails loudly. Each entry is one of

* ``reply``: 200 with ``text`` as the assistant message;
* ``error``: HTTP ``status`` (429, 500, 503 ...) with an OpenAI-style error body and,
  optionally, a ``Retry-After: <retry_after>`` header;
* ``hang``: accept the request and never answer (until ``hang_s`` or server shutdown),
  to exercise client timeouts;
* ``auth_error``: 401 as for a wrong key;
* ``drop``: read the request and close the connection without an answer (a server that
  died mid-request).

``delay_s`` delays any kind; ``finish_reason`` overrides a reply's (e.g. ``"length"``). Transcripts on disk (``rewardgym/testing/transcripts/*.json``)
are ``{"description": ..., "task": ..., "responses": [{...}, ...]}`` with the fields of
:class:`ScriptedResponse`; some carry an ``"expect"`` entry (what a critic should find)
for tests.

Example::

    with ScriptedOpenAIServer("rate_limit_then_success") as server:
        client = LLMClient(model=server.model, base_url=server.base_url, api_key=server.api_key, ...)
        client.complete([{"role": "user", "content": "hi"}])
        assert server.chat_request_count == 2
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Sequence

TRANSCRIPTS_DIR = Path(__file__).resolve().parent / "transcripts"

KINDS = ("reply", "error", "hang", "auth_error", "drop")


@dataclass
class ScriptedResponse:
    """One scripted answer of the test server (see the module docstring).

    Attributes:
        kind: ``"reply"``, ``"error"``, ``"hang"`` or ``"auth_error"``.
        text: the assistant message of a ``reply``.
        status: HTTP status of an ``error``.
        message: error message of an ``error`` (default: a standard one for the status).
        retry_after: seconds sent as ``Retry-After`` with an ``error`` (None: no header).
        delay_s: seconds to wait before answering.
        match: regex searched (``re.search``, DOTALL) in the last user message; None
            matches every request.
        repeat: keep the entry after use (e.g. "always 500").
        note: free text for people reading the transcript.
        finish_reason: a reply's ``finish_reason`` (None: ``"stop"``, or ``"length"`` when
            cut at ``max_tokens``).
    """

    kind: str = "reply"
    text: str = ""
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    delay_s: float = 0.0
    match: str | None = None
    repeat: bool = False
    note: str = ""
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"scripted response kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "error" and self.status < 400:
            raise ValueError(f"an 'error' response needs an HTTP error status, got {self.status}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScriptedResponse":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scripted-response keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def transcript_names() -> list[str]:
    """Names of the shipped transcripts (file stems in ``rewardgym/testing/transcripts``)."""
    return sorted(p.stem for p in TRANSCRIPTS_DIR.glob("*.json"))


def load_transcript_file(name: str) -> dict[str, Any]:
    """The raw JSON of transcript ``name`` (a stem of a shipped transcript, or a path)."""
    path = Path(name)
    if not path.is_file():
        path = TRANSCRIPTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no transcript {name!r}; shipped: {', '.join(transcript_names())}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_transcript(name: str) -> list[ScriptedResponse]:
    """The scripted responses of transcript ``name`` (stem or path)."""
    return [ScriptedResponse.from_dict(d) for d in load_transcript_file(name)["responses"]]


@dataclass
class ReceivedRequest:
    """A request the server received: method, path, JSON body (or None), headers."""

    method: str
    path: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


_STATUS_MESSAGES = {
    400: ("invalid_request_error", "Bad request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    404: ("invalid_request_error", "Not found."),
    429: ("rate_limit_error", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", "The server had an error while processing your request."),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
}


def _tokens(text: Any) -> int:
    return math.ceil(len(str(text)) / 4)


class ScriptedOpenAIServer:
    """TEST TOOLING: OpenAI-compatible server on ``127.0.0.1:<free port>`` answering from a script.

    Args:
        script: a transcript name (``"rate_limit_then_success"``), a path to a transcript
            JSON file, or a list of :class:`ScriptedResponse` / dicts. None: empty script
            (add entries with :meth:`add`).
        api_key: the only key accepted (401 otherwise).
        models: model names served (404 ``model_not_found`` otherwise); the first is
            :attr:`model`.
        hang_s: how long a ``hang`` entry holds the connection at most.
        context_size: the context window in words (None: unlimited; see the module docstring).
        advertise_context: list ``context_size`` in ``GET /v1/models`` (``max_model_len``).
        structured: ``response_format`` types accepted.

    Use as a context manager (``with ScriptedOpenAIServer(...) as server``), or call
    :meth:`start` / :meth:`stop`. Thread-safe; :attr:`requests` lists every request received.
    """

    def __init__(self, script: str | Path | Sequence[ScriptedResponse | dict] | None = None, *,
                 api_key: str = "sk-rewardgym-test", models: Sequence[str] = ("rewardgym-test-model",),
                 hang_s: float = 60.0, context_size: int | None = None, advertise_context: bool = False,
                 structured: Sequence[str] = ("json_schema", "json_object")):
        self.api_key = api_key
        self.models = list(models)
        self.hang_s = hang_s
        self.context_size = context_size
        self.advertise_context = advertise_context
        self.structured = tuple(structured)
        self._script: list[ScriptedResponse] = []
        self._used: list[bool] = []
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if isinstance(script, (str, Path)):
            self.add(*load_transcript(str(script)))
        elif script is not None:
            self.add(*script)

    # -- script -------------------------------------------------------------------------
    def add(self, *responses: ScriptedResponse | dict) -> None:
        """Append entries to the script."""
        with self._lock:
            for r in responses:
                self._script.append(r if isinstance(r, ScriptedResponse) else ScriptedResponse.from_dict(r))
                self._used.append(False)

    def _next(self, last_user: str) -> ScriptedResponse | None:
        with self._lock:
            for i, entry in enumerate(self._script):
                if self._used[i]:
                    continue
                if entry.match is not None and not re.search(entry.match, last_user, re.DOTALL):
                    continue
                if not entry.repeat:
                    self._used[i] = True
                return entry
        return None

    @property
    def remaining(self) -> int:
        """Unused, non-repeating script entries."""
        with self._lock:
            return sum(not u and not e.repeat for u, e in zip(self._used, self._script))

    @property
    def chat_requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def chat_request_count(self) -> int:
        """Number of ``POST /v1/chat/completions`` requests received (every attempt)."""
        return len(self.chat_requests)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.models[0]

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what ``OPENAI_BASE_URL`` would be."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ScriptedOpenAIServer":
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"owner": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="rewardgym-scripted-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases hanging handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "ScriptedOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __iter__(self) -> Iterator[ScriptedResponse]:
        return iter(list(self._script))


class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass

    # -- helpers ------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str = "", code: str | None = None,
                    headers: dict[str, str] | None = None) -> None:
        err_type, default = _STATUS_MESSAGES.get(status, ("server_error" if status >= 500 else
                                                          "invalid_request_error", f"HTTP {status}"))
        self._send_json(status, {"error": {"message": message or default, "type": err_type,
                                           "param": None, "code": code}}, headers)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.owner.api_key}"

    def _record(self, body: Any) -> None:
        with self.owner._lock:
            self.owner.requests.append(ReceivedRequest(self.command, self.path, body, dict(self.headers)))

    # -- endpoints ----------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._record(None)
        if self.path.rstrip("/") != "/v1/models":
            self._send_error(404, f"unknown path {self.path}")
            return
        if not self._authorised():
            self._send_error(401, code="invalid_api_key")
            return
        extra = {"max_model_len": self.owner.context_size} if self.owner.advertise_context else {}
        self._send_json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "rewardgym-testing", **extra}
            for m in self.owner.models]})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            self._record(raw.decode(errors="replace"))
            self._send_error(400, "request body is not JSON")
            return
        self._record(body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(404, f"unknown path {self.path}")
            return
        if not self._authorised():
            self._send_error(401, code="invalid_api_key")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send_error(400, "'messages' is required")
            return
        model = body.get("model")
        if model not in self.owner.models:
            self._send_error(404, f"The model `{model}` does not exist or you do not have access to it.",
                             code="model_not_found")
            return
        if body.get("stream"):
            self._send_error(400, "the rewardgym test server does not stream (stream=false only)")
            return
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") not in (*self.owner.structured, "text"):
            self._send_error(400, f"response_format type {fmt.get('type')!r} is not supported by this server")
            return
        prompt_tokens = sum(_tokens(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
        max_tokens = body.get("max_tokens")
        ctx = self.owner.context_size
        if ctx is not None and prompt_tokens + int(max_tokens or 0) > ctx:
            self._send_error(400, f"Requested tokens ({prompt_tokens + int(max_tokens or 0)}) exceed context "
                                  f"window of {ctx}")
            return
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        last_user = str(users[-1].get("content", "")) if users else ""
        entry = self.owner._next(last_user)
        if entry is None:
            self._send_error(400, "scripted server: script exhausted (no scripted response left for this "
                             "request)", code="script_exhausted")
            return
        if entry.delay_s > 0:
            self.owner._stop.wait(entry.delay_s)
        if entry.kind == "hang":
            self.owner._stop.wait(self.owner.hang_s)
            self.close_connection = True
            return
        if entry.kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if entry.kind == "auth_error":
            self._send_error(401, code="invalid_api_key")
            return
        if entry.kind == "error":
            headers = {"Retry-After": f"{entry.retry_after:g}"} if entry.retry_after is not None else None
            self._send_error(entry.status, entry.message, headers=headers)
            return
        text, finish = entry.text, entry.finish_reason or "stop"
        if isinstance(max_tokens, int) and _tokens(text) > max_tokens:
            text, finish = text[:4 * max(0, max_tokens)], "length"
        completion_tokens = _tokens(text)
        self._send_json(200, {
            "id": f"chatcmpl-rewardgym-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })
