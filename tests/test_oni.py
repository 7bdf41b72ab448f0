"""ONI (learned intrinsic rewards from LLM feedback): store, annotators, service, models, source.

LLM back-end tests talk real HTTP to rewardgym's scripted OpenAI-compatible server
(TEST TOOLING, rewardgym/testing/openai_server.py) through the project's LLMClient. The
offline back-end and the encoder-based models use the real packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time

import gymnasium as gym
import numpy as np
import pytest

import rewardgym
from rewardgym.learners.episodes import public
from rewardgym.intrinsic import (AnnotationParseError, AnnotationService, ClassificationModel, EmbeddingAnnotator,
                                 Label, LabelStore, LLMAnnotator, OniOptions, OniReward, OniSystem, OniWrapper,
                                 Preference, RankingModel, RetrievalModel, caption_key, normalize_caption,
                                 parse_reply)
from rewardgym.intrinsic.annotators import default_goal
from rewardgym.intrinsic.encoder import CaptionEncoder
from rewardgym.llm.client import LLMClient
from rewardgym.testing import ScriptedOpenAIServer

MINIHACK = "rewardgym/MiniHack-Room-5x5-v0"

POSITIVE = ["You kill the newt!", "You kill the jackal!", "You kill the giant rat!", "You kill the kobold!",
            "You kill the goblin!", "You kill the sewer rat!", "You kill the lichen!", "You kill the gnome!"]
NEGATIVE = ["It's a wall.", "It's solid stone.", "You can't move diagonally out of an intact doorway.",
            "Never mind.", "There is nothing here to pick up.", "The giant rat bites!", "The jackal misses!",
            "You hear some noises in the distance."]
# held-out paraphrases: no caption here is in the training set
HELD_POS = ["You destroy the kobold zombie!", "You slay the hill orc!", "You have killed the fox!",
            "The newt is killed!"]
HELD_NEG = ["There is a wall in the way.", "That is a solid rock wall.", "The newt bites you!",
            "Nothing here to pick up."]


@pytest.fixture(scope="module")
def encoder() -> CaptionEncoder:
    return CaptionEncoder()


def toy_labels() -> dict[str, Label]:
    return {caption_key(c): Label(c, 1.0) for c in POSITIVE} | {caption_key(c): Label(c, 0.0) for c in NEGATIVE}


def llm_client(server: ScriptedOpenAIServer, tmp_path, **kwargs) -> LLMClient:
    return LLMClient(model=server.model, base_url=server.base_url, api_key=server.api_key,
                     transcript_path=tmp_path / "oni_llm.jsonl",
                     **{"timeout_s": 5, "max_retries": 0, "cache_dir": False, **kwargs})


# ------------------------------------------------------------------------------------------------
# store
# ------------------------------------------------------------------------------------------------
def test_labels_round_trip_through_the_store(tmp_path):
    path = tmp_path / "labels.sqlite"
    config = {"annotator": "llm", "prompt": "is this progress?"}
    store = LabelStore(path, config)
    assert store.put_labels([Label("You kill the newt!", 1.0, 0.9, "1: yes"), Label("It's a wall.", 0.0)]) == 2
    store.put_preferences([Preference("You kill the newt!", "It's a wall.", 1.0, "1: 1")])
    store.close()
    again = LabelStore(path, config)
    assert again.fingerprint == store.fingerprint
    assert again.get("You kill the newt!") == Label("You kill the newt!", 1.0, 0.9, "1: yes")
    assert again.get("It's a wall.").value == 0.0
    assert again.get("never labelled") is None
    assert len(again) == 2 and set(again.labels()) == {caption_key("You kill the newt!"), caption_key("It's a wall.")}
    assert again.preferences() == [Preference("You kill the newt!", "It's a wall.", 1.0, "1: 1")]
    with sqlite3.connect(path) as conn:  # WAL: readable by other processes while a run writes
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_from_another_prompt_is_reported_and_kept_apart(tmp_path, caplog):
    path = tmp_path / "labels.sqlite"
    first = LabelStore(path, {"prompt": "A"})
    first.put_labels([Label("You kill the newt!", 1.0)])
    first.close()
    with caplog.at_level(logging.WARNING, logger="rewardgym.intrinsic"):
        other = LabelStore(path, {"prompt": "B"})
    assert other.foreign_labels == 1 and len(other) == 0 and other.get("You kill the newt!") is None
    assert "1 labels of another prompt" in caplog.text and str(path) in caplog.text
    other.put_labels([Label("You kill the newt!", 0.0)])
    other.close()
    back = LabelStore(path, {"prompt": "A"})  # the first prompt's labels were not touched
    assert back.get("You kill the newt!").value == 1.0


@pytest.mark.parametrize("kind", ["garbage", "other_sqlite", "old_schema"])
def test_incompatible_database_file_is_moved_aside_not_a_crash(tmp_path, caplog, kind):
    path = tmp_path / "labels.sqlite"
    if kind == "garbage":
        path.write_bytes(b"\x00\xffthis is not a database" * 100)
    elif kind == "other_sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE users (name TEXT)")
    else:
        LabelStore(path, {"prompt": "A"}).close()
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE meta SET value='0' WHERE key='schema_version'")
    with caplog.at_level(logging.WARNING, logger="rewardgym.intrinsic"):
        store = LabelStore(path, {"prompt": "A"})
    assert store.recovered_from is not None and store.recovered_from.is_file()
    assert str(path) in caplog.text and str(store.recovered_from) in caplog.text
    store.put_labels([Label("ok", 1.0)])
    assert store.get("ok").value == 1.0


def test_captions_in_unexpected_encodings_are_normalised():
    assert normalize_caption(b"You kill the newt!\x00\x00\x00") == "You kill the newt!"
    assert normalize_caption(b"\xff\xfeYou \xe9 kill") == "\ufffd\ufffdYou \ufffd kill"  # not UTF-8: replaced
    assert normalize_caption(np.bytes_(b"It's a wall.")) == "It's a wall."
    assert normalize_caption(None) == "" and normalize_caption("   ") == "" and normalize_caption(b"") == ""
    assert normalize_caption("a\tb\n\x07c  d") == "a b c d"
    assert normalize_caption("Cafe\u0301") == "Caf\u00e9"  # NFC: one key for both spellings
    assert len(normalize_caption("x" * 5000)) == 512
    assert normalize_caption(42) == "42"


# ------------------------------------------------------------------------------------------------
# reply parsing
# ------------------------------------------------------------------------------------------------
def test_parse_reply_formats_and_garbage():
    assert parse_reply("1: yes\n2: no\n3: YES", 3) == [1.0, 0.0, 1.0]
    assert parse_reply("Sure!\n[1] no\n- 2. yes\n", 2) == [0.0, 1.0]
    assert parse_reply('```json\n{"labels": {"1": "yes", "2": "no"}}\n```', 2) == [1.0, 0.0]
    assert parse_reply("[true, false, 1]", 3) == [1.0, 0.0, 1.0]
    assert parse_reply("1: yes", 3) == [1.0, None, None]  # partial: the rest is asked again
    assert parse_reply("1: 2\n2: tie\n3: 1", 3, "preference") == [0.0, 0.5, 1.0]
    for garbled in ("As an AI I cannot judge games.", "", "7: yes", "1: maybe", "{not json"):
        with pytest.raises(AnnotationParseError):
            parse_reply(garbled, 3)


# ------------------------------------------------------------------------------------------------
# annotators and the asynchronous service
# ------------------------------------------------------------------------------------------------
CAPTIONS = ["You kill the newt!", "It's a wall.", "You find a hidden passage."]


def test_llm_labels_are_stored_and_a_restarted_service_does_not_ask_again(tmp_path):
    path = tmp_path / "labels.sqlite"
    with ScriptedOpenAIServer("oni_labels") as server:
        annotator = LLMAnnotator(llm_client(server, tmp_path), batch_size=8)
        store = LabelStore(path, annotator.config)
        service = AnnotationService(annotator, store)
        assert service.submit(CAPTIONS + CAPTIONS + ["", b"", None]) == 3  # de-duplicated, empties ignored
        assert service.wait_idle(10)
        assert [store.get(c).value for c in CAPTIONS] == [1.0, 0.0, 1.0]
        assert server.chat_request_count == 1
        prompt = server.chat_requests[0].body["messages"][-1]["content"]
        assert "sign of progress" in prompt and '1. "You kill the newt!"' in prompt
        service.close()
        store.close()
    # restart: a new service on the same file; the server would answer "script exhausted" (400)
    with ScriptedOpenAIServer([]) as server:
        annotator = LLMAnnotator(llm_client(server, tmp_path), batch_size=8)
        store = LabelStore(path, annotator.config)
        service = AnnotationService(annotator, store)
        assert service.submit(CAPTIONS) == 0
        assert service.wait_idle(5)
        stats = service.stats()
        assert server.chat_request_count == 0
        assert stats["reused"] == 3 and stats["coverage"] == 1.0 and stats["labelled_at_start"] == 3
        service.close()


def test_service_survives_llm_errors_with_backoff(tmp_path):
    with ScriptedOpenAIServer("oni_flaky") as server:
        annotator = LLMAnnotator(llm_client(server, tmp_path), batch_size=3)
        store = LabelStore(tmp_path / "labels.sqlite", annotator.config)
        service = AnnotationService(annotator, store, backoff_initial_s=0.01, backoff_max_s=0.05, max_attempts=10,
                                    stats_path=tmp_path / "oni_stats.json")
        service.submit(CAPTIONS)
        assert service.wait_idle(20)
        service.close()
        assert {c: store.get(c).value for c in CAPTIONS} == {CAPTIONS[0]: 1.0, CAPTIONS[1]: 0.0, CAPTIONS[2]: 1.0}
        stats = json.loads((tmp_path / "oni_stats.json").read_text())
        assert stats["errors_by_kind"]["LLMUnavailableError"] == 2  # the 429 and the 500
        assert stats["errors_by_kind"]["parse"] == 2  # prose, and labels out of range
        assert stats["errors_by_kind"]["partial"] == 1 and stats["unparsed"] == 2
        assert stats["labelled"] == 3 and stats["backlog"] == 0 and "7: yes" in stats["last_error"]
        assert server.chat_request_count == 6


def test_a_retry_reaches_the_model_not_the_cache(tmp_path):
    """Labelling runs at temperature 0: an identical retry would be answered from the cache
    with the same unusable reply. A retry is a new request (another seed, temperature > 0)."""
    script = [{"kind": "reply", "text": "As an AI I cannot judge games."},
              {"kind": "reply", "text": "1: yes\n2: no\n3: yes"}]
    with ScriptedOpenAIServer(script) as server:
        annotator = LLMAnnotator(llm_client(server, tmp_path, cache_dir=tmp_path / "cache"), batch_size=3)
        store = LabelStore(":memory:", annotator.config)
        service = AnnotationService(annotator, store, backoff_initial_s=0.01, backoff_max_s=0.02)
        service.submit(CAPTIONS)
        assert service.wait_idle(20)
        service.close()
        assert server.chat_request_count == 2 and server.remaining == 0
        first, retry = (r.body for r in server.chat_requests)
        assert first["temperature"] == 0.0 and "seed" not in first
        assert retry["seed"] == 1 and retry["temperature"] >= 0.7
        assert [store.get(c).value for c in CAPTIONS] == [1.0, 0.0, 1.0]


def test_coverage_counts_labels_not_scored_steps(tmp_path):
    """Unusable replies leave no label: coverage must read 0 although a reward model fitted on
    nothing still gives every caption a score."""
    with ScriptedOpenAIServer([{"kind": "reply", "text": "no idea", "repeat": True}]) as server:
        opts = OniOptions(model="retrieval", annotator="llm", llm_model=server.model, base_url=server.base_url,
                          api_key=server.api_key, llm_cache_dir=False, llm_retries=0,
                          store_path=str(tmp_path / "labels.sqlite"))
        system = OniSystem(opts, MINIHACK)
        try:
            source = OniReward(rewardgym.get_task(MINIHACK), opts, system=system)
            for _ in range(200):  # until the model has scored the captions (bounded)
                source.rewards_for(CAPTIONS)
                if all(caption_key(c) in system.scores for c in CAPTIONS) and server.chat_request_count >= 2:
                    break
                time.sleep(0.05)
            stats = system.stats()
            assert stats["oni/scored_captions"] == 3 and stats["oni/message_steps"] > 0
            assert stats["oni/step_coverage"] == 0.0 and stats["oni/coverage"] == 0.0 and stats["oni/labelled"] == 0
        finally:
            system.close()


def test_failing_captions_are_dropped_after_max_attempts(tmp_path):
    with ScriptedOpenAIServer([{"kind": "reply", "text": "no idea", "repeat": True}]) as server:
        annotator = LLMAnnotator(llm_client(server, tmp_path), batch_size=4)
        service = AnnotationService(annotator, LabelStore(":memory:", annotator.config), max_attempts=3,
                                    backoff_initial_s=0.01, backoff_max_s=0.02)
        service.submit(CAPTIONS)
        assert service.wait_idle(10)
        service.close()
        assert service.stats()["failed"] == 3 and server.chat_request_count == 3 and service.stats()["labelled"] == 0


def test_llm_preferences_for_ranking(tmp_path):
    with ScriptedOpenAIServer("oni_preferences") as server:
        annotator = LLMAnnotator(llm_client(server, tmp_path), batch_size=1)
        pairs = annotator.prefer([("You kill the newt!", "It's a wall.")]) + annotator.prefer(
            [("It's a wall.", "You kill the jackal!")]) + annotator.prefer([("It's a wall.", "Never mind.")])
        assert [p.value for p in pairs] == [1.0, 0.0, 0.5]
        assert "which message is the bigger sign of progress" in server.chat_requests[0].body["messages"][-1]["content"]


def test_embedding_annotator_labels_by_similarity_to_the_goal(encoder):
    annotator = EmbeddingAnnotator("You kill a monster.; You defeat the enemy.", encoder=encoder)
    labels = annotator.label(POSITIVE[:3] + NEGATIVE[:3])
    assert [lb.value for lb in labels] == [1.0] * 3 + [0.0] * 3
    assert all(-2 <= lb.score <= 2 for lb in labels)
    (pref,) = annotator.prefer([("It's a wall.", "You kill the newt!")])
    assert pref.value == 0.0
    assert EmbeddingAnnotator("find gold", encoder=encoder).config != annotator.config  # another fingerprint


# Messages collected from MiniHack play, with the label a NetHack player would give them.
# Each "no" shares words with its task's goal: the first labeller rewarded "This door is
# locked.", which an agent farms by bumping into the door.
MINIHACK_MESSAGES = {
    "MiniHack-KeyRoom-S5": {"g - a key named The Master Key of Thievery.": 1,
                            "You see here a key named The Master Key of Thievery.": 1,
                            "This door is locked.": 0, "The stairs are solidly fixed to the floor.": 0,
                            "It won't come off the hinges.": 0, "There is nothing here to pick up.": 0},
    "MiniHack-MultiRoom-N2": {"The door opens.": 1, "The door resists!": 0,
                              "You can't move diagonally into an intact doorway.": 0},
    "MiniHack-River": {"You push the boulder into the water.  Now you can cross it!": 1,
                       "You try to move the boulder, but in vain.": 0,
                       "You try to crawl out of the water.  Pheew!  That was close.": 0},
    "MiniHack-CorridorBattle": {"You kill the giant rat!  The giant rat bites!": 1, "The giant rat bites!": 0,
                                "You miss the giant rat.  The giant rat bites!": 0, "You miss the giant rat.": 0},
}


@pytest.mark.parametrize("task", sorted(MINIHACK_MESSAGES))
def test_embedding_annotator_labels_minihack_messages(encoder, task):
    annotator = EmbeddingAnnotator(default_goal(f"rewardgym/{task}-v0"), encoder=encoder)
    messages = MINIHACK_MESSAGES[task]
    labels = annotator.label(list(messages))
    assert {lb.caption: lb.value for lb in labels} == {m: float(v) for m, v in messages.items()}


def test_embedding_annotator_labels_a_large_batch(encoder):
    """Every caption of a 200-caption batch gets a label in [0, 1] (its speed: benchmarks/oni_overhead.py)."""
    annotator = EmbeddingAnnotator(encoder=encoder)
    captions = [f"You see here {i} gold pieces." for i in range(200)]
    labels = annotator.label(captions)
    assert len(labels) == 200 and all(lb is not None and 0.0 <= lb.value <= 1.0 for lb in labels)


# ------------------------------------------------------------------------------------------------
# reward models
# ------------------------------------------------------------------------------------------------
def test_retrieval_learns_the_toy_labelling_but_cannot_generalise():
    model = RetrievalModel()
    model.fit(toy_labels())
    assert list(model.predict(POSITIVE + NEGATIVE)) == [1.0] * 8 + [0.0] * 8
    assert list(model.predict(HELD_POS + HELD_NEG)) == [0.0] * 8  # unseen captions: the default


def test_classification_learns_and_generalises_to_paraphrases_better_than_retrieval(encoder):
    model = ClassificationModel(encoder, seed=0, steps=200)
    info = model.fit(toy_labels())
    assert info["train_accuracy"] == 1.0
    p = model.predict(POSITIVE + NEGATIVE)
    assert (p[:8] > 0.5).all() and (p[8:] < 0.5).all()

    def balanced_accuracy(pred):
        return 0.5 * ((pred[:4] > 0.5).mean() + (pred[4:] <= 0.5).mean())

    held = HELD_POS + HELD_NEG
    acc_cls = balanced_accuracy(model.predict(held))
    retrieval = RetrievalModel()
    retrieval.fit(toy_labels())
    acc_ret = balanced_accuracy(retrieval.predict(held))
    assert acc_ret == 0.5  # chance: every unseen caption gets the same value
    assert acc_cls >= 0.75 and acc_cls > acc_ret


def test_ranking_learns_the_toy_preferences(encoder):
    rng = np.random.default_rng(0)
    prefs = []
    for _ in range(60):
        a, b = POSITIVE[rng.integers(8)], NEGATIVE[rng.integers(8)]
        prefs.append(Preference(a, b, 1.0) if rng.random() < 0.5 else Preference(b, a, 0.0))
    prefs.append(Preference(POSITIVE[0], POSITIVE[1], 0.5))
    model = RankingModel(encoder, seed=0, steps=200)
    assert model.fit({}, prefs)["train_accuracy"] == 1.0
    r = model.predict(POSITIVE + NEGATIVE)
    assert r[:8].min() > r[8:].max()
    held = model.predict(HELD_POS + HELD_NEG)
    assert held[:4].mean() > held[4:].mean()


# ------------------------------------------------------------------------------------------------
# the reward source
# ------------------------------------------------------------------------------------------------
def labelled_system(tmp_path, model="retrieval", **options) -> OniSystem:
    """A system restarted on a store that already holds two labels of its labeller."""
    options = {"count_exponent": 1.0, **options}
    opts = OniOptions(model=model, store_path=str(tmp_path / "labels.sqlite"), beta=0.5, goal="You kill a monster.",
                      **options)
    first = OniSystem(opts, MINIHACK)
    first.store.put_labels([Label("You kill the newt!", 1.0), Label("It's a wall.", 0.0)])
    first.close()
    return OniSystem(opts, MINIHACK)


def test_oni_reward_counts_normalises_and_never_waits(tmp_path):
    system = labelled_system(tmp_path)
    try:
        source = OniReward(rewardgym.get_task(MINIHACK), system.options, system=system)
        first = source.rewards_for(["You kill the newt!", "", "You kill the newt!"])
        assert list(first) == [0.0, 0.0, 0.0]  # nothing scored yet: 0 at once, never a wait
        assert system.wait_until_scored(20)
        kill = "You kill the newt!"
        assert list(source.rewards_for([kill, kill, "It's a wall."])) == [0.5, 0.5, 0.0]  # per-env counts
        assert list(source.rewards_for([kill, kill, kill])) == [0.25, 0.25, 0.5]  # beta / N(c)^1
        source.on_episode_start(np.array([0]))
        assert list(source.rewards_for([kill, kill, kill])) == [0.5, 0.5 / 3, 0.25]
        odd = source.rewards_for([b"\xff\xfe\x00", None, "   ", "\x07\x07"])  # bad encodings, empty: no crash
        assert list(odd) == [0.0, 0.0, 0.0, 0.0]
        assert system.wait_until_scored(20)
        assert caption_key("\ufffd\ufffd") in system.scores  # and it was labelled like any other caption
        assert system.stats()["oni/step_coverage"] > 0
    finally:
        system.close()


def test_a_repeated_progress_message_cannot_be_farmed(tmp_path):
    """The exploit: bump into the same "progress" message every step. With the default
    anti-repetition (α = 2) one episode of it pays at most ζ(2)·β ≈ 1.64·β; with α = 0.5
    the same farming pays ~2·β·√N and grows without bound."""
    system = labelled_system(tmp_path, count_exponent=OniOptions().count_exponent)
    try:
        source = OniReward(rewardgym.get_task(MINIHACK), system.options, system=system)
        kill = "You kill the newt!"
        source.rewards_for([kill])
        assert system.wait_until_scored(20)
        source.on_episode_start(np.array([0]))
        farmed = sum(float(source.rewards_for([kill])[0]) for _ in range(300))
        assert 0.5 <= farmed <= 0.5 * np.pi ** 2 / 6  # beta = 0.5, first payment 0.5
        assert 0.5 * sum(n ** -0.5 for n in range(1, 301)) > 10 * farmed  # what α = 0.5 would have paid
    finally:
        system.close()


def test_oni_reward_needs_messages():
    with pytest.raises(ValueError, match="needs state.message.*Hopper"):
        OniReward(rewardgym.get_task("rewardgym/Hopper-Hop-v0"))


def test_options_are_validated():
    with pytest.raises(ValueError, match="unknown ONI reward model 'nope'.*retrieval, classification, ranking"):
        OniOptions(model="nope")
    with pytest.raises(ValueError, match="unknown ONI option"):
        OniOptions.from_dict({"modle": "ranking"})


def test_composed_reward_on_a_minihack_vector_env(tmp_path):
    env = gym.make_vec(MINIHACK, num_envs=4, reward="sparse + 0.1*oni",
                       reward_kwargs={"oni": {"model": "classification", "store_path": str(tmp_path / "l.sqlite"),
                                              "fit_steps": 20}})
    try:
        env.reset(seed=0)
        for _ in range(60):
            _, reward, _, _, info = env.step(env.action_space.sample())
            assert set(public(info["reward_terms"])) == {"sparse/success", "oni"}
            np.testing.assert_allclose(reward, info["reward_terms"]["sparse/success"] + info["reward_terms"]["oni"])
        system = env.source.parts[1][1].system
        assert system.wait_until_scored(30)
        assert system.stats()["oni/labelled"] >= 1 and (tmp_path / "l.sqlite").is_file()
    finally:
        env.close()
    assert system._stop.is_set(), "closing the env stops the system it was the last user of"


def test_training_goes_on_while_the_llm_hangs(tmp_path):
    """The annotator's server never answers; the learner keeps stepping while requests hang.

    Proved by counting, not timing: while the annotator has at most one request in flight
    (hung for 30 s, abandoned after 0.5 s), the learner completes many steps."""
    with ScriptedOpenAIServer("oni_hang", hang_s=30) as server:
        opts = {"model": "retrieval", "annotator": "llm", "llm_model": server.model, "base_url": server.base_url,
                "api_key": server.api_key, "llm_timeout_s": 0.5, "llm_retries": 0, "llm_cache_dir": False,
                "store_path": str(tmp_path / "l.sqlite")}
        env = gym.make_vec(MINIHACK, num_envs=4, reward="sparse + oni", reward_kwargs={"oni": opts})
        try:
            env.reset(seed=0)
            source = env.source.parts[1][1]
            steps = 0
            deadline = time.monotonic() + 120  # a bound on a broken test, not a speed requirement
            while source.system.stats()["oni/errors"] < 2 and time.monotonic() < deadline:
                env.step(env.action_space.sample())
                steps += 1
                if steps == 200:
                    requests_at_200 = server.chat_request_count
            stats = source.system.stats()
        finally:
            env.close()
        assert stats["oni/errors"] >= 2 and stats["oni/labelled"] == 0 and server.chat_request_count >= 2
        # a learner that waited for each request would have sent one per step or two
        assert steps >= 200 and requests_at_200 <= 4


def test_oni_wrapper_for_single_envs_and_sb3(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv

    opts = OniOptions(model="retrieval", store_path=str(tmp_path / "l.sqlite"))
    venv = DummyVecEnv([lambda: OniWrapper(gym.make(MINIHACK, reward="sparse"), opts) for _ in range(2)])
    try:
        venv.seed(0)
        venv.reset()
        for _ in range(50):
            _, _, _, infos = venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
            assert all("oni" in info["reward_terms"] for info in infos)
        wrappers = venv.envs
        assert wrappers[0].oni is not wrappers[1].oni and wrappers[0].oni.system is wrappers[1].oni.system
    finally:
        venv.close()


def test_train_cli_with_oni_writes_labels_and_metrics_and_a_restart_reuses_them(tmp_path):
    from typer.testing import CliRunner

    from rewardgym.cli.main import app

    runner = CliRunner()
    hyper = tmp_path / "ppo.json"
    hyper.write_text(json.dumps({"num_steps": 32, "num_minibatches": 2, "update_epochs": 1}))
    result = runner.invoke(app, ["train", MINIHACK, "--reward", "sparse", "--intrinsic", "oni", "--oni-model",
                                 "retrieval", "--oni-beta", "0.2", "--steps", "128", "--num-envs", "2", "--config",
                                 str(hyper), "--runs-dir", str(tmp_path), "--name", "run"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["intrinsic"] == "oni" and config["oni"]["model"] == "retrieval" and config["oni"]["beta"] == 0.2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "oni/backlog" in rows[-1] and "oni/coverage" in rows[-1]
    stats = json.loads((run / "oni_stats.json").read_text())
    with sqlite3.connect(run / "oni_labels.sqlite") as conn:
        captions = [c for (c,) in conn.execute("SELECT caption FROM labels")]
    assert stats["seen_captions"] >= 1 and len(captions) == stats["labelled"] >= 1
    # a restarted run (same options, same run directory) re-uses every label: nothing is asked again
    restarted = OniSystem(OniOptions.from_dict({**config["oni"], "store_path": str(run / "oni_labels.sqlite")}),
                          MINIHACK)
    try:
        restarted.observe({caption_key(c): c for c in captions})
        assert restarted.wait_until_scored(20)
        again = restarted.service.stats()
        assert again["reused"] == len(captions) and again["labelled"] == 0
    finally:
        restarted.close()
    bad = runner.invoke(app, ["train", MINIHACK, "--intrinsic", "oni", "--oni-model", "nope", "--runs-dir",
                              str(tmp_path)])
    assert bad.exit_code == 2 and "unknown ONI reward model 'nope'" in bad.output
