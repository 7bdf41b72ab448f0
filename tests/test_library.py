"""The reward-program library: expert + user programs, and TF-IDF retrieval of few-shot examples."""

from __future__ import annotations

import json

import pytest

from rewardgym.envs.registry import all_tasks, get_task
from rewardgym.llm_rewards.library import (LibraryError, add_program, get_program, list_programs, rank, retrieve,
                                           tokenize)
from rewardgym.rewards.sandbox import ProgramRejected

MOONWALK = '''"""Moonwalk: glide backwards while the legs step forwards."""


def compute_reward(state, action):
    backward = -state.torso_lin_vel[:, 0]
    ctrl = -1e-3 * sum_sq(action)
    return backward + ctrl, {"backward": backward, "ctrl": ctrl}
'''


@pytest.fixture(autouse=True)
def _user_library(tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDGYM_LIBRARY", str(tmp_path / "library"))


def test_expert_programs_listed_with_table_fields():
    experts = list_programs("expert")
    by_task = {e.task_id: e for e in experts}
    for task in all_tasks().values():
        assert task.id in by_task, task.id  # every task's expert is in the library
        entry = by_task[task.id]
        assert entry.path == task.expert_path and entry.family == task.family and entry.view == task.view.name
    row = by_task["rewardgym/Hopper-Hop-v0"].row()
    assert set(row) == {"name", "origin", "task", "family", "summary"}
    assert row["name"] == "Hopper-Hop" and row["origin"] == "expert" and row["summary"].startswith("Expert reward")
    assert list_programs("user") == []


def test_get_program_by_name_or_task_id():
    assert get_program("Hopper-Hop").name == "Hopper-Hop"
    assert get_program("rewardgym/Hopper-Hop-v0").name == "Hopper-Hop"
    assert get_program("hopper-hop.py").name == "Hopper-Hop"
    with pytest.raises(LibraryError, match="closest: Hopper-Hop"):
        get_program("Hoper-Hop")


def test_add_program_validates_and_stores_with_metadata(tmp_path):
    entry = add_program(MOONWALK, "Walker2d-Backward", {"instruction": "moonwalk", "success_rate": 0.4})
    assert entry.origin == "user" and entry.path.parent == tmp_path / "library"
    assert entry.name.startswith("Walker2d-Backward-") and entry.task_id == "rewardgym/Walker2d-Backward-v0"
    meta = json.loads(entry.path.with_suffix(".json").read_text())
    assert meta["success_rate"] == 0.4 and meta["task_id"] == entry.task_id and meta["created"]
    assert [e.name for e in list_programs("user")] == [entry.name]
    assert get_program(entry.name).source() == MOONWALK
    with pytest.raises(LibraryError, match="exists"):
        add_program(MOONWALK, "Walker2d-Backward")
    path = tmp_path / "mine.py"
    path.write_text(MOONWALK)
    from_file = add_program(path, "Walker2d-Backward", name="my-moonwalk")
    assert from_file.name == "my-moonwalk" and from_file.metadata["source_file"] == str(path)
    with pytest.raises(LibraryError, match="expert program"):
        add_program(MOONWALK, "Walker2d-Backward", name="Hopper-Hop")
    with pytest.raises(ProgramRejected, match="unknown state field 'obj_pos'"):
        add_program("def compute_reward(state, action):\n    return state.obj_pos[:, 0]\n", "Hopper-Hop")


def test_tokenize():
    assert tokenize("Running forward, torso_height and HalfCheetah") == ["run", "forward", "torso", "height",
                                                                        "half", "cheetah"]


@pytest.mark.parametrize("instruction, task, expected", [
    ("run forward fast", "Walker2d-Walk", {"HalfCheetah-Run", "Ant-Run", "Humanoid-Run"}),
    ("do a backflip", "Hopper-Frontflip", {"Hopper-Backflip", "HalfCheetah-Backflip"}),
    ("open the drawer by pulling its handle", "MetaWorld-DrawerClose", {"MetaWorld-DrawerOpen"}),
    ("collect gold coins", "NetHack-Score", {"NetHack-Gold"}),
    ("pick up the cube and place it at the goal", "Fetch-Push", {"Fetch-PickAndPlace"}),
    ("lie down flat on the ground and rest", "Humanoid-Run", {"Ant-LieDown"}),
])
def test_retrieval_ranks_the_right_expert_first(instruction, task, expected):
    top = retrieve(instruction, task, k=3)
    assert len(top) == 3 and top[0].name in expected, [e.name for e in top]
    assert all(e.task_id != get_task(task).id for e in top)  # own expert excluded


def test_retrieval_prefers_the_tasks_view_and_can_include_own_expert():
    ranked = rank("run forward fast", "Walker2d-Walk")
    assert all(s.entry.view == "locomotion" for s in ranked[:5])
    assert ranked[0].score > ranked[0].similarity  # the same-view bonus
    own = retrieve(get_task("Walker2d-Walk").instruction, "Walker2d-Walk", k=1, include_own_expert=True)
    assert own[0].name == "Walker2d-Walk"


def test_retrieval_finds_user_programs():
    add_program(MOONWALK, "Walker2d-Backward", {"instruction": "moonwalk like Michael Jackson"}, name="moonwalk")
    assert retrieve("a smooth moonwalk", "Walker2d-Walk", k=1)[0].name == "moonwalk"
