"""NetHack (NLE) and MiniHack tasks: real games, the shared view, success tests, experts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("nle")
pytest.importorskip("minihack")

from rewardgym.envs.families import nethack as nh  # noqa: E402
from rewardgym.envs.view import StateView, stack_raw  # noqa: E402
from rewardgym.rewards.program import RewardProgram  # noqa: E402

STR_FIELDS = {"message", "inventory"}
BOOL_FIELDS = {"on_stairs_down", "stairs_down_visible", "stairs_up_visible", "pet_adjacent",
               "oracle_adjacent", "gold_visible", "success", "terminated"}


def _spec(name: str):
    spec = nh._SPECS[f"rewardgym/{name}-v0"]
    ok, why = spec.available()
    if not ok:
        pytest.skip(why)
    return spec


def _batch(spec, envs, prev=None):
    batch = stack_raw([e.raw_state() for e in envs])
    batch["success"] = spec.success(StateView(spec.view, batch))
    return batch, StateView(spec.view, batch, prev_raw=prev)


def _action(env, command) -> int:
    return list(env.unwrapped.actions).index(command)


@pytest.mark.parametrize("spec", nh.TASKS, ids=lambda s: s.short_name)
def test_task_random_rollout_view_and_expert(spec):
    spec = _spec(spec.short_name)
    envs = [spec.make_env(), spec.make_env()]
    for i, env in enumerate(envs):
        env.reset(seed=i)
        env.action_space.seed(i)
    reset_batch, reset_state = _batch(spec, envs)
    assert reset_state.success.shape == (2,) and reset_state.success.dtype == bool
    assert not reset_state.success.any(), "success must be False at reset"
    assert (reset_state.end_status == 0).all() and (reset_state.hp > 0).all()
    program = RewardProgram.from_file(spec.expert_path, view=spec.view)

    prev = reset_batch
    for _ in range(8):
        for env in envs:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        batch, state = _batch(spec, envs, prev)
        reward, terms = program.compute_reward(state, np.zeros(2, dtype=np.int64))
        assert np.shape(reward) == (2,) and np.isfinite(reward).all()
        assert terms and all(np.shape(v) == (2,) and np.isfinite(v).all() for v in terms.values())
        prev = batch

    for name, f in spec.view.fields.items():
        value = getattr(state, name)
        assert f.shape == "(B,)" and value.shape == (2,), name
        if name in STR_FIELDS:
            assert value.dtype == object, name
            assert all(isinstance(v, str if name == "message" else tuple) for v in value), name
        elif name in BOOL_FIELDS:
            assert value.dtype == bool, name
        else:
            assert np.issubdtype(value.dtype, np.number) and np.isfinite(value).all(), name
        assert getattr(state.prev, name).shape == (2,)
    assert (state.x >= 0).all() and (state.x < nh.COLS).all() and (state.y < nh.ROWS).all()
    assert (state.depth >= 1).all() and (state.explored_cells > 0).all()
    assert (state.explored_cells_total >= state.prev.explored_cells_total).all()


def test_message_and_inventory_decoding():
    spec = _spec("NetHack-Eat")
    env = spec.make_env()
    env.reset(seed=0)
    from nle.nethack import Command

    env.step(_action(env, Command.EAT))
    row = env.raw_state()
    assert row["message"].startswith("What do you want to eat?"), row["message"]
    raw_msg = env.unwrapped.last_observation[env.unwrapped._observation_keys.index("message")]
    assert row["message"] == bytes(raw_msg).rstrip(b"\0").decode().strip()
    assert any("food ration" in item for item in row["inventory"])  # the monk's kit


def test_eat_success_reached_by_eating():
    """EAT, then answer the item prompt with a movement key that is a food letter."""
    spec = _spec("NetHack-Eat")
    env = spec.make_env()
    env.reset(seed=0)
    from nle.nethack import Command, CompassDirection

    prev, state = _batch(spec, [env])
    assert not state.success[0]
    env.step(_action(env, Command.EAT))
    prompt = env.raw_state()["message"]
    letters = prompt[prompt.index("[") + 1:prompt.index(" or")]
    direction = next(d for d in CompassDirection if chr(d.value) in letters)
    for _ in range(10):  # a multi-turn meal continues on its own; wait a few steps
        env.step(_action(env, direction) if direction else 0)
        direction = None
        batch, state = _batch(spec, [env], prev)
        if state.success[0]:
            break
        prev = batch
    assert state.success[0] and state.nutrition_gained[0] > 0


def test_room5x5_success_reached_and_terminal_row_is_pre_quit():
    spec = _spec("MiniHack-Room-5x5")
    env = spec.make_env()
    env.reset(seed=0)
    from nle.nethack import CompassDirection as C

    moves = {(0, -1): C.N, (1, 0): C.E, (0, 1): C.S, (-1, 0): C.W,
             (1, -1): C.NE, (1, 1): C.SE, (-1, 1): C.SW, (-1, -1): C.NW}
    prev, state = _batch(spec, [env])
    assert not state.success[0] and state.stairs_down_visible[0]
    for _ in range(10):
        ys, xs = np.nonzero(nh.glyph_tables()["stairs_down"][env.raw_state()["glyphs"]])
        dx, dy = int(np.sign(xs[0] - state.x[0])), int(np.sign(ys[0] - state.y[0]))
        _, reward, terminated, _, info = env.step(_action(env, moves[(dx, dy)]))
        batch, state = _batch(spec, [env], prev)
        assert state.stairs_down_distance[0] == state.prev.stairs_down_distance[0] - 1
        if terminated:
            break
        prev = batch
    assert terminated and int(info["end_status"]) == nh.END_TASK_SUCCESSFUL and reward == 1.0
    # NLE blanks its arrays when it quits the game; the row is the state it judged.
    assert state.success[0] and state.on_stairs_down[0] and state.stairs_down_distance[0] == 0
    assert state.hp[0] > 0 and (state.x[0], state.y[0]) == (xs[0], ys[0])


def test_nethack_success_tests_on_constructed_states():
    spec = _spec("NetHack-Staircase")
    env = spec.make_env()
    env.reset(seed=0)
    base = stack_raw([env.raw_state()])
    tables = nh.glyph_tables()
    x, y = int(base["blstats"][0, 0]), int(base["blstats"][0, 1])

    def state_with(**changes):
        batch = {k: v.copy() for k, v in base.items()}
        for key, fn in changes.items():
            fn(batch[key])
        return StateView(nh.VIEW, batch)

    def put(category, dx, dy):
        def fn(glyphs):
            glyphs[0, y + dy, x + dx] = np.flatnonzero(tables[category])[0]
        return fn

    def set_bl(name, value):
        def fn(blstats):
            blstats[0, nh.BLSTATS[name]] = value
        return fn

    plain = StateView(nh.VIEW, base)
    succ = {s.short_name: s.success for s in nh.TASKS}
    for name in ("NetHack-Staircase", "NetHack-StaircasePet", "NetHack-Oracle", "NetHack-Score",
                 "NetHack-Gold", "NetHack-Eat", "NetHack-Scout", "MiniHack-Room-5x5"):
        assert not succ[name](plain)[0], name

    on_stairs = state_with(on_stairs_down=lambda a: a.fill(True))
    assert succ["NetHack-Staircase"](on_stairs)[0]
    assert on_stairs.stairs_down_distance[0] == 0 and on_stairs.stairs_down_visible[0]
    pet_only = state_with(glyphs=put("pet", 1, 0))
    assert pet_only.pet_adjacent[0] and not succ["NetHack-StaircasePet"](pet_only)[0]
    assert succ["NetHack-StaircasePet"](state_with(on_stairs_down=lambda a: a.fill(True),
                                                   glyphs=put("pet", -1, 1)))[0]
    oracle = state_with(glyphs=put("oracle", 1, 1))
    assert succ["NetHack-Oracle"](oracle)[0] and oracle.oracle_distance[0] == 1
    assert oracle.monsters_adjacent[0] >= 1  # the Oracle is a (peaceful) monster
    far_oracle = state_with(glyphs=put("oracle", 3, 0))
    assert not succ["NetHack-Oracle"](far_oracle)[0] and far_oracle.oracle_distance[0] == 3
    assert succ["NetHack-Score"](state_with(blstats=set_bl("score", nh.SCORE_GOAL)))[0]
    assert succ["NetHack-Gold"](state_with(blstats=set_bl("gold", nh.GOLD_GOAL)))[0]
    assert succ["NetHack-Scout"](state_with(explored_cells_total=lambda a: a.fill(nh.SCOUT_GOAL)))[0]
    assert succ["MiniHack-Room-5x5"](state_with(end_status=lambda a: a.fill(2)))[0]
    stairs = state_with(glyphs=put("stairs_down", -2, 1))
    assert stairs.stairs_down_visible[0] and stairs.stairs_down_distance[0] == 2


def test_seeded_reset_is_reproducible_and_episodes_differ():
    spec = _spec("NetHack-Score")
    env = spec.make_env()
    first = env.reset(seed=7)[0]["glyphs"].copy()  # NLE reuses its arrays: copy
    again = env.reset(seed=7)[0]["glyphs"].copy()
    later = [env.reset()[0]["glyphs"].copy() for _ in range(2)]
    assert np.array_equal(first, again)
    assert not all(np.array_equal(first, g) for g in later)


@pytest.mark.parametrize("name", ["NetHack-Score", "MiniHack-KeyRoom-S5"])
def test_gymnasium_and_sb3_env_checkers(name):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    spec = _spec(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # TaskEnv records no constructor args, so gymnasium cannot re-make it from env.spec.
        check_env(spec.make_env(), skip_render_check=True, skip_close_check=True)
        sb3_check_env(spec.make_env())


def test_death_row_repeats_last_reading_with_zero_hp():
    """Rats kill a randomly acting knight; NLE blanks its arrays at death, the row must not."""
    spec = _spec("MiniHack-CorridorBattle")
    env = spec.make_env()
    env.reset(seed=0)
    env.action_space.seed(0)
    program = RewardProgram.from_file(spec.expert_path, view=spec.view)
    for _ in range(2000):
        prev = stack_raw([env.raw_state()])
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            if int(info["end_status"]) == nh.END_DEATH:
                break
            env.reset()
    else:
        pytest.fail("no death in 2000 random steps")
    _, state = _batch(spec, [env], prev)
    assert state.end_status[0] == nh.END_DEATH and state.hp[0] == 0 and not state.success[0]
    assert state.prev.hp[0] > 0 and state.depth[0] == 1 and state.explored_cells[0] > 0
    _, terms = program.compute_reward(state, np.zeros(1, dtype=np.int64))
    assert terms["death"][0] < 0
