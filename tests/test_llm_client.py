"""LLMClient against the TEST TOOLING server (rewardgym.testing.openai_server) over real HTTP."""

from __future__ import annotations

import json
import math
import time

import pytest

from rewardgym.llm.client import (DEFAULT_MAX_TOKENS, FIRST_TIMEOUT_S, MIN_TIMEOUT_S, RETRY_SEED_STEP, TIMEOUT_SAFETY,
                                  TIMEOUT_SLACK_S, BudgetExceeded, Budget, ContextLengthError, LLMAuthError, LLMClient,
                                  LLMConfigError, LLMModelError, LLMRequestError, LLMTimeoutError, LLMUnavailableError,
                                  request_key)
from rewardgym.testing import ScriptedOpenAIServer, ScriptedResponse, load_transcript

MESSAGES = [{"role": "system", "content": "You write reward programs."},
            {"role": "user", "content": "Write a reward for hopping forward."}]


@pytest.fixture(autouse=True)
def _no_llm_env(monkeypatch):
    """Tests configure the client explicitly; the developer's environment must not leak in."""
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "REWARDGYM_LLM_MODEL", "REWARDGYM_LLM_CACHE",
                "REWARDGYM_LLM_CONTEXT"):
        monkeypatch.delenv(var, raising=False)


def make_client(server: ScriptedOpenAIServer, tmp_path, **kwargs) -> LLMClient:
    opts = dict(model=server.model, base_url=server.base_url, api_key=server.api_key, run_dir=tmp_path / "run",
                cache_dir=tmp_path / "cache", timeout_s=5.0, max_retries=2, backoff_initial_s=0.01,
                backoff_max_s=0.05)
    opts.update(kwargs)
    return LLMClient(**opts)


def read_transcript(tmp_path) -> list[dict]:
    path = tmp_path / "run" / "llm_transcript.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_success_transcript_and_cache(tmp_path):
    with ScriptedOpenAIServer("good_programs") as server:
        client = make_client(server, tmp_path)
        first = client.complete(MESSAGES, temperature=0.7, max_tokens=2000)
        assert "def compute_reward" in first.text and not first.cached
        assert first.completion_tokens == math.ceil(len(first.text) / 4)  # the server's token count
        assert first.prompt_tokens == sum(math.ceil(len(m["content"]) / 4) for m in MESSAGES)
        second = client.complete(MESSAGES, temperature=0.7, max_tokens=2000)
        assert second.cached and second.text == first.text and second.key == first.key
        assert server.chat_request_count == 1  # the repeat never reached the server
        # a new client over the same cache (a resumed run) pays nothing either
        resumed = make_client(server, tmp_path)
        assert resumed.complete(MESSAGES, temperature=0.7, max_tokens=2000).cached
        assert server.chat_request_count == 1
        body = server.chat_requests[0].body
        assert body["model"] == server.model and body["messages"] == MESSAGES
        assert body["temperature"] == 0.7 and body["max_tokens"] == 2000
    records = read_transcript(tmp_path)
    assert [r["cached"] for r in records] == [False, True, True]
    rec = records[0]
    assert rec["messages"] == MESSAGES and rec["params"] == {"temperature": 0.7, "max_tokens": 2000}
    assert rec["reply"] == first.text and rec["error"] is None and rec["attempts"] == 1
    assert rec["usage"]["prompt_tokens"] == first.prompt_tokens
    assert rec["usage"]["completion_tokens"] == first.completion_tokens
    assert rec["usage"]["total_tokens"] == first.total_tokens
    assert rec["latency_s"] > 0 and rec["time"] and rec["key"] == first.key
    assert client.usage.requests == 1 and client.usage.cache_hits == 1
    assert client.usage.total_tokens == first.total_tokens
    # one atomically written JSON file per entry, named by the key
    entry = tmp_path / "cache" / first.key[:2] / f"{first.key}.json"
    assert json.loads(entry.read_text())["reply"] == first.text
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cache_key_covers_model_messages_params_and_sample():
    base = request_key("m", MESSAGES, {"temperature": 1.0}, 0)
    assert base == request_key("m", [dict(m) for m in MESSAGES], {"temperature": 1.0}, 0)
    assert base != request_key("m2", MESSAGES, {"temperature": 1.0}, 0)
    assert base != request_key("m", MESSAGES[:1], {"temperature": 1.0}, 0)
    assert base != request_key("m", MESSAGES, {"temperature": 0.5}, 0)
    assert base != request_key("m", MESSAGES, {"temperature": 1.0}, 1)


def test_corrupt_cache_entry_is_asked_again(tmp_path):
    reply = ScriptedResponse(text="```python\ndef compute_reward(state, action):\n    return state.dt\n```",
                             repeat=True)
    with ScriptedOpenAIServer([reply]) as server:
        client = make_client(server, tmp_path)
        key = client.complete(MESSAGES).key
        (tmp_path / "cache" / key[:2] / f"{key}.json").write_text('{"reply": ')  # torn by hand
        again = client.complete(MESSAGES)
        assert not again.cached and server.chat_request_count == 2


def test_k_samples_are_k_requests_with_distinct_seeds(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="sample", repeat=True)]) as server:
        client = make_client(server, tmp_path)
        samples = client.sample(MESSAGES, 3, seed=10, max_workers=3)
        assert [s.sample_index for s in samples] == [0, 1, 2]
        assert len({s.key for s in samples}) == 3
        assert sorted(r.body["seed"] for r in server.chat_requests) == [10, 11, 12]
        assert all(r.body.get("n") is None for r in server.chat_requests)
        again = client.sample(MESSAGES, 3, seed=10)
        assert all(s.cached for s in again) and server.chat_request_count == 3


def test_rate_limit_then_success_honours_retry_after(tmp_path, monkeypatch):
    import threading

    waits: list[float] = []  # the client's own back-off sleeps (this thread; the server runs in another)
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    with ScriptedOpenAIServer("rate_limit_then_success") as server:
        client = make_client(server, tmp_path, backoff_initial_s=5.0, backoff_max_s=5.0)
        result = client.complete(MESSAGES)
        assert "def compute_reward" in result.text and result.attempts == 2
        assert server.chat_request_count == 2
        assert waits == [pytest.approx(0.2)]  # waited Retry-After (0.2 s), not the 5 s back-off
    rec = read_transcript(tmp_path)[0]
    assert rec["attempts"] == 2 and rec["retry_errors"][0].startswith("HTTP 429")


def test_retry_after_longer_than_allowed_fails_at_once(tmp_path):
    script = [ScriptedResponse(kind="error", status=429, retry_after=3600), ScriptedResponse(text="late")]
    with ScriptedOpenAIServer(script) as server:
        client = make_client(server, tmp_path, max_retry_after_s=10)
        with pytest.raises(LLMUnavailableError, match="retry after 3600 s"):
            client.complete(MESSAGES)
        assert server.chat_request_count == 1


def test_server_error_retries_then_fails(tmp_path):
    with ScriptedOpenAIServer("server_error") as server:
        client = make_client(server, tmp_path, max_retries=2)
        with pytest.raises(LLMUnavailableError) as info:
            client.complete(MESSAGES)
        assert server.chat_request_count == 3  # 1 + 2 retries
        assert "failed after 3 attempt(s)" in str(info.value) and "HTTP 500" in str(info.value)
        assert server.base_url in str(info.value) and server.model in str(info.value)
        assert str(info.value).count("HTTP 500") == 1 and "(x3)" in str(info.value)  # each cause once, counted
    rec = read_transcript(tmp_path)[0]
    assert rec["error"].startswith("LLMUnavailableError") and rec["reply"] is None and rec["attempts"] == 3
    assert client.usage.errors == 1 and client.usage.requests == 1


def test_hung_connection_times_out_and_a_timeout_is_retried_once_with_another_seed(tmp_path):
    said = []
    with ScriptedOpenAIServer("hang", hang_s=30) as server:
        client = make_client(server, tmp_path, timeout_s=0.3, max_retries=5, on_retry=said.append)
        with pytest.raises(LLMTimeoutError, match=r"no reply within 0.3 s in 2 attempt\(s\).*--llm-timeout") as info:
            client.complete(MESSAGES, seed=7)
        assert server.chat_request_count == 2  # not 6: a reply too slow once is too slow again
        assert len(said) == 1 and "time-out retry 1 of 1 in" in said[0]  # the counter says the truth
        assert info.value.option == "--llm-timeout" and info.value.limit == 0.6  # what the resume command carries
        assert isinstance(info.value, LLMUnavailableError)
        assert [r.body["seed"] for r in server.chat_requests] == [7, 7 + RETRY_SEED_STEP]
        assert all(r.body["max_tokens"] == DEFAULT_MAX_TOKENS for r in server.chat_requests)  # bounded
    rec = read_transcript(tmp_path)[0]
    assert rec["seeds"] == [7, 7 + RETRY_SEED_STEP] and rec["error"].startswith("LLMTimeoutError")
    assert rec["latency_s"] is not None


def test_the_time_limit_is_learnt_from_the_servers_speed_unless_given(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="word " * 40)] * 2) as server:
        learnt = make_client(server, tmp_path, timeout_s=None)
        assert learnt.request_timeout(2048) == FIRST_TIMEOUT_S  # nothing measured yet
        learnt.complete(MESSAGES, max_tokens=100)
        speed = learnt.tokens_per_s
        assert speed and speed > 0
        for cap in (64, 512, 2048):  # from the reply cap and the measured speed
            assert learnt.request_timeout(cap) == max(MIN_TIMEOUT_S, TIMEOUT_SAFETY * cap / speed + TIMEOUT_SLACK_S)
        given = make_client(server, tmp_path / "given", timeout_s=42.0)
        given.complete(MESSAGES, max_tokens=100, seed=1)
        assert given.tokens_per_s and given.request_timeout(2048) == 42.0  # --llm-timeout stays an override
        # a later process of the run starts from the speed its transcript recorded
        later = make_client(server, tmp_path, timeout_s=None)
        later.resume_from_transcript()
        assert later.tokens_per_s == pytest.approx(speed, rel=0.25)  # latencies are stored rounded
        other = make_client(server, tmp_path, timeout_s=None, base_url=server.base_url + "/")
        other.base_url = "http://elsewhere/v1"
        other.resume_from_transcript()
        assert other.tokens_per_s is None  # another server's speed is not this one's


def test_reply_cut_at_max_tokens_is_reported(tmp_path):
    long = " ".join(f"word{i}" for i in range(300))
    with ScriptedOpenAIServer([ScriptedResponse(text=long)]) as server:
        client = make_client(server, tmp_path, max_tokens=100)
        reply = client.complete(MESSAGES)
    assert reply.truncated and reply.completion_tokens == 100 and len(reply.text) == 400
    assert reply.truncation_note() == "the reply was cut at 100 tokens (max_tokens)"
    assert read_transcript(tmp_path)[0]["finish_reason"] == "length"


def test_dropped_connection_is_retried(tmp_path):
    with ScriptedOpenAIServer([{"kind": "drop"}, {"text": "back"}]) as server:
        client = make_client(server, tmp_path)
        assert client.complete(MESSAGES).text == "back"
        assert server.chat_request_count == 2
    assert read_transcript(tmp_path)[0]["retry_errors"][0].startswith("connection error")


def test_context_refusal_is_a_context_length_error_with_the_window(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="fits")], context_size=60) as server:
        client = make_client(server, tmp_path, max_tokens=100)
        with pytest.raises(ContextLengthError) as info:
            client.complete(MESSAGES)
        assert info.value.n_ctx == 60 and info.value.prompt_tokens == 116
        assert "exceed context window of 60" in str(info.value)
        assert server.chat_request_count == 1  # not retried as is
        assert client.learn_context(info.value, 500) == 60 and client.context_source == "refusal"
        assert client.complete(MESSAGES, max_tokens=20).text == "fits"


def test_context_window_from_the_server_and_the_environment(tmp_path, monkeypatch):
    with ScriptedOpenAIServer([], context_size=4096, advertise_context=True) as server:
        client = make_client(server, tmp_path)
        assert client.context_window() == 4096 and client.context_source == "server"
    with ScriptedOpenAIServer([]) as server:
        assert make_client(server, tmp_path).context_window() is None  # the server does not say
        monkeypatch.setenv("REWARDGYM_LLM_CONTEXT", "3000")
        assert make_client(server, tmp_path).context_window() == 3000
        monkeypatch.setenv("REWARDGYM_LLM_CONTEXT", "lots")
        with pytest.raises(LLMConfigError, match="REWARDGYM_LLM_CONTEXT"):
            make_client(server, tmp_path)


@pytest.mark.parametrize("accepted, mode", [(("json_schema", "json_object"), "json_schema"),
                                            (("json_object",), "json_object"), ((), "none")])
def test_structured_output_uses_the_first_form_the_server_accepts(tmp_path, accepted, mode):
    schema = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    with ScriptedOpenAIServer([ScriptedResponse(text='{"x": 1}', repeat=True)], structured=accepted) as server:
        client = make_client(server, tmp_path)
        assert client.complete_json(MESSAGES, schema).text == '{"x": 1}'
        assert client.structured_mode == mode
        client.complete_json(MESSAGES, schema, seed=3)  # later calls go straight to the form that worked
        sent = [r.body.get("response_format") for r in server.chat_requests]
    assert sent[-1] == sent[-2]
    if mode == "none":
        assert sent[-1] is None
    else:
        assert sent[-1]["type"] == mode and schema in (sent[-1].get("schema"), sent[-1].get("json_schema", {}).get("schema"))


def test_usage_of_a_run_is_read_back_from_its_transcript(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="one two three", repeat=True)]) as server:
        first = make_client(server, tmp_path, cache_dir=False)
        first.complete(MESSAGES, seed=1)
        first.complete(MESSAGES, seed=2)
        later = make_client(server, tmp_path, cache_dir=False, budget=Budget(max_requests=3))
        later.resume_from_transcript()  # another process of the same run
        assert later.usage.requests == 2 and later.usage.total_tokens == first.usage.total_tokens
        later.complete(MESSAGES, seed=3)
        with pytest.raises(BudgetExceeded, match="--max-requests") as info:
            later.complete(MESSAGES, seed=4)
        assert info.value.option == "--max-requests" and info.value.limit == 3


def test_server_text_of_a_refusal_is_kept(tmp_path):
    with ScriptedOpenAIServer([{"kind": "error", "status": 401, "message": "key revoked by admin"}]) as server:
        with pytest.raises(LLMAuthError, match="key revoked by admin"):
            make_client(server, tmp_path).complete(MESSAGES)


def test_wrong_key_is_a_clear_auth_error_without_retry(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="never")]) as server:
        client = make_client(server, tmp_path, api_key="sk-wrong")
        with pytest.raises(LLMAuthError) as info:
            client.complete(MESSAGES)
        text = str(info.value)
        assert server.base_url in text and server.model in text and "OPENAI_API_KEY" in text
        assert server.chat_request_count == 1
    with ScriptedOpenAIServer("wrong_key") as server:  # the scripted 401
        client = make_client(server, tmp_path)
        with pytest.raises(LLMAuthError):
            client.complete(MESSAGES)
        assert server.chat_request_count == 1


def test_refused_model_names_the_model_and_what_is_served(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="never")]) as server:
        client = make_client(server, tmp_path, model="gpt-does-not-exist")
        with pytest.raises(LLMModelError) as info:
            client.complete(MESSAGES)
        text = str(info.value)
        assert "gpt-does-not-exist" in text and server.base_url in text and "REWARDGYM_LLM_MODEL" in text
        assert "the server lists: rewardgym-test-model" in text
        assert server.chat_request_count == 1


def test_other_client_errors_are_not_retried(tmp_path):
    with ScriptedOpenAIServer([]) as server:  # empty script: the server answers 400 "script exhausted"
        client = make_client(server, tmp_path)
        with pytest.raises(LLMRequestError, match="HTTP 400, not retried"):
            client.complete(MESSAGES)
        assert server.chat_request_count == 1


def test_configuration_errors_and_environment(tmp_path, monkeypatch):
    with pytest.raises(LLMConfigError, match="OPENAI_BASE_URL"):
        LLMClient(model="m", cache_dir=False)
    with pytest.raises(LLMConfigError, match="REWARDGYM_LLM_MODEL"):
        LLMClient(base_url="http://127.0.0.1:9/v1", cache_dir=False)
    with ScriptedOpenAIServer("good_programs") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
        monkeypatch.setenv("REWARDGYM_LLM_MODEL", server.model)
        monkeypatch.setenv("REWARDGYM_LLM_CACHE", str(tmp_path / "envcache"))
        client = LLMClient()
        assert client.model == server.model and client.base_url == server.base_url
        client.complete(MESSAGES)
        assert list((tmp_path / "envcache").rglob("*.json"))


def test_budget_caps(tmp_path):
    with ScriptedOpenAIServer([ScriptedResponse(text="one two three", repeat=True)]) as server:
        client = make_client(server, tmp_path, budget=Budget(max_requests=2))
        client.complete(MESSAGES, seed=1)
        client.complete(MESSAGES, seed=2)
        with pytest.raises(BudgetExceeded, match="max 2 requests"):
            client.complete(MESSAGES, seed=3)
        assert client.complete(MESSAGES, seed=1).cached  # cache hits are free
        assert server.chat_request_count == 2

        tokens = make_client(server, tmp_path, cache_dir=False, budget=Budget(max_total_tokens=10))
        tokens.complete(MESSAGES)  # 16 prompt + 4 completion tokens
        with pytest.raises(BudgetExceeded, match="tokens used of max 10"):
            tokens.complete(MESSAGES)
    assert "BudgetExceeded" in read_transcript(tmp_path)[2]["error"]
    with ScriptedOpenAIServer("hang", hang_s=30) as server:
        client = make_client(server, tmp_path, cache_dir=False, timeout_s=30, max_retries=5,
                             budget=Budget(max_wall_s=0.5))
        with pytest.raises(BudgetExceeded, match="wall time"):
            client.complete(MESSAGES)
        assert server.chat_request_count == 1  # the 30 s attempt was cut to the 0.5 s left: no retry fits


def test_transcripts_load():
    for name in ("good_programs", "hang", "synthesis_hopper"):
        assert load_transcript(name)
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_transcript("no-such-transcript")


def test_connection_refused_is_retried_then_reported(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMClient(model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", cache_dir=False,
                       timeout_s=2, max_retries=1, backoff_initial_s=0.01)
    with pytest.raises(LLMUnavailableError, match="connection error"):
        client.complete(MESSAGES)
    assert client.usage.attempts == 2


def test_the_token_estimate_is_calibrated_by_the_servers_own_counts(tmp_path):
    from rewardgym.llm.client import CALIBRATION_MARGIN, CHARS_PER_TOKEN, estimate_tokens

    with ScriptedOpenAIServer([ScriptedResponse(text="ok")]) as server:  # it counts ceil(chars / 4) per message
        client = make_client(server, tmp_path)
        assert client.chars_per_token is None and client.fitting_chars_per_token() == CHARS_PER_TOKEN
        client.complete(MESSAGES)
        chars = sum(len(m["content"]) for m in MESSAGES)
        assert client.chars_per_token == chars / sum(math.ceil(len(m["content"]) / 4) for m in MESSAGES)
        ratio = client.fitting_chars_per_token()
        assert ratio == CALIBRATION_MARGIN * client.chars_per_token and ratio > CHARS_PER_TOKEN
        assert estimate_tokens(MESSAGES, ratio) < estimate_tokens(MESSAGES)
        later = make_client(server, tmp_path)  # a later process of the run: from the transcript
        later.resume_from_transcript()
        assert later.chars_per_token == client.chars_per_token


def test_a_refused_structured_form_is_not_asked_again_after_a_context_refusal(tmp_path):
    """The json_schema probe is refused, the json_object request is then refused as too long: the
    retry with a fitted prompt goes straight to json_object (no second probe against --max-requests)."""
    schema = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    with ScriptedOpenAIServer([ScriptedResponse(text='{"x": 1}', repeat=True)], structured=("json_object",),
                              context_size=300) as server:
        client = make_client(server, tmp_path)
        with pytest.raises(ContextLengthError):
            client.complete_json(MESSAGES, schema, max_tokens=1000)
        assert client.complete_json(MESSAGES, schema, max_tokens=100).text == '{"x": 1}'
        kinds = [(r.body.get("response_format") or {}).get("type") for r in server.chat_requests]
    assert kinds == ["json_schema", "json_object", "json_object"] and client.structured_mode == "json_object"
