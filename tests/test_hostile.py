"""Hostile inputs: one program or file per class of attack, each asserting that the side
effect did not happen and that the error is clean (docs/SECURITY.md lists the classes).

1. numpy beyond the allow-list      5. a validator fed absurd sources
2. the torch backend                6. received run directories that carry code or trust
3. writes into shared state         7. non-finite numbers
4. programs past time/memory/stack  8. untrusted text printed as markup
9. multi-agent programs: the same classes through make_parallel / make_parallel_vec
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rewardgym  # noqa: F401  (registers ids)
from rewardgym.envs.view import StateView
from rewardgym.rewards.program import ProgramLimits, RewardProgram, RewardProgramError
from rewardgym.rewards.sandbox import ProgramRejected
from rewardgym.wrappers.inject import VectorRewardInjection

CLI = [sys.executable, "-m", "rewardgym.cli.main"]
TASK = "rewardgym/Hopper-Hop-v0"
FAST = ProgramLimits(timeout_s=2.0, memory_mb=256)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker isolation is Linux-specific")


def program(tmp_path: Path, body: str, name: str = "evil.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def run_random(env, steps: int, seed: int = 0) -> list[dict]:
    env.action_space.seed(seed)
    env.reset(seed=seed)
    infos = []
    for _ in range(steps):
        *_, info = env.step(env.action_space.sample())
        infos.append(info)
    return infos


def cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"}, **kwargs)


# -- 1. numpy beyond the allow-list ---------------------------------------------------------
@pytest.mark.parametrize("call", [
    "np.test(extra_argv=['--junitxml=' + TARGET])",          # numpy's test runner: runs pytest
    "np.lib.npyio.DataSource(TARGET).open(TARGET, 'w')",     # I/O under a submodule
    "np.savetxt(TARGET, action)",
    "np.vectorize(lambda v: v)(action)",                     # fine, but not on the list
])
def test_numpy_outside_the_allow_list_never_runs(tmp_path, call):
    target = tmp_path / "written.txt"
    path = program(tmp_path, f"""
        TARGET = {str(target)!r}
        def compute_reward(state, action):
            x = {call}
            return state.torso_height
        """)
    with pytest.raises(ProgramRejected) as info:
        gym.make(TASK, reward=str(path))
    assert f"{path}:3:" in str(info.value) and "allow-list" in str(info.value)
    assert not target.exists()


def test_the_np_a_program_gets_has_nothing_but_the_allow_list():
    from rewardgym.rewards.prelude import NUMPY_SUBSET, prelude_namespace

    np_ns = prelude_namespace("numpy")["np"]
    assert set(dir(np_ns)) == {n for n in NUMPY_SUBSET if "." not in n} | {"linalg"}
    for name in ("test", "load", "lib", "ctypeslib", "memmap", "frompyfunc"):
        with pytest.raises(AttributeError):
            getattr(np_ns, name)


# -- 2. the torch backend -------------------------------------------------------------------
def _torch_state(spec):
    import torch

    b = 3
    raw = {"x": torch.zeros(b, dtype=torch.float64), "env_reward": torch.zeros(b, dtype=torch.float64),
           "success": torch.zeros(b, dtype=torch.bool), "elapsed_steps": torch.ones(b, dtype=torch.int64),
           "terminated": torch.zeros(b, dtype=torch.bool)}
    return StateView(spec, raw, {k: v.clone() for k, v in raw.items()}), raw


@pytest.fixture
def x_view():
    from rewardgym.envs.view import Field, ViewSpec, raw

    return ViewSpec.build("hostile", "x only.", [Field("x", "(B,)", "m", "x.", raw("x", None))])


@pytest.mark.parametrize("expr", ["state.x.untyped_storage()", "state.x.numpy()", "state.x.storage()",
                                  "state.x.data_ptr()", "state.x.share_memory_()", "state.x.copy_(state.x)"])
def test_tensor_methods_outside_the_allow_list_are_rejected(x_view, expr):
    with pytest.raises(ProgramRejected, match="allow-list"):
        RewardProgram(f"def compute_reward(state, action):\n    y = {expr}\n    return state.x\n", "t.py", view=x_view)


def test_in_place_writes_on_torch_state_fail_and_change_nothing(x_view):
    import torch

    state, raw = _torch_state(x_view)
    before = {k: v.clone() for k, v in raw.items()}
    prog = RewardProgram("def compute_reward(state, action):\n    x = state.x\n    x += 100.0\n    return x\n",
                         "t.py", view=x_view, limits=FAST)
    with pytest.raises(RewardProgramError) as info:
        prog.compute_reward(state, torch.zeros((3, 1)))
    assert info.value.line == 3 and "read-only" in str(info.value)
    assert all(torch.equal(raw[k], before[k]) for k in raw)
    ok = RewardProgram("def compute_reward(state, action):\n    return np.tanh(state.x) + 1.0\n", "ok.py",
                       view=x_view, limits=FAST)
    reward, _ = ok.compute_reward(state, torch.zeros((3, 1)))
    assert isinstance(reward, torch.Tensor) and torch.allclose(reward, torch.ones(3, dtype=torch.float64))
    prog.close(), ok.close()


# -- 3. writes into shared state --------------------------------------------------------------
MPE = "rewardgym/MPE-SimpleSpread-v0"  # multi-agent: its programs can do nothing a single-agent one cannot
WRITES = {  # name: (task, the write, a field to return)
    "success |=": (TASK, "s = state.success\n    s |= True", "torso_height"),
    "env_reward +=": (TASK, "e = state.env_reward\n    e += 100.0", "torso_height"),
    "item assignment": (TASK, "h = state.torso_height\n    h[0] = 9.0", "torso_height"),
    "prev": (TASK, "p = state.prev.success\n    p |= True", "torso_height"),
    "per-agent field": (MPE, "p = state.agent_pos\n    p[0, 0, 0] = 9.0", "agent_collisions"),
    "per-agent env_reward": (MPE, "e = state.env_reward\n    e += 100.0", "agent_collisions"),
    "team success": (MPE, "s = state.success\n    s |= True", "agent_collisions"),
    "prev per-agent": (MPE, "p = state.prev.agent_collisions\n    p *= 0.0", "agent_collisions"),
}


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted-accident"])
@pytest.mark.parametrize("write", list(WRITES), ids=list(WRITES))
def test_writes_into_state_fail_and_reports_stay_true(tmp_path, write, trusted):
    task, code, field = WRITES[write]
    path = tmp_path / "evil.py"
    path.write_text(f"def compute_reward(state, action):\n    {code}\n    return state.{field}\n")
    env = gym.make_vec(task, num_envs=2, reward=str(path), trusted=trusted, reward_limits=FAST)
    env.reset(seed=0)
    with pytest.raises(RewardProgramError) as info:
        env.step(env.action_space.sample())
    assert info.value.line in (2, 3) and "read-only" in str(info.value)
    env.close()


def test_a_program_cannot_fake_success_or_env_reward(tmp_path):
    """What synthesis ranks by (success, env_reward, episode statistics) is what the task says,
    whatever the program does: compare with the same env under reward="env"."""
    path = program(tmp_path, """
        def compute_reward(state, action):
            return 1000.0 + 0.0 * state.torso_height, {"success": 1.0 + 0.0 * state.torso_height}

        def compute_success(state):
            return state.torso_height > -1.0
        """)
    fake = run_random(gym.make_vec(TASK, num_envs=2, reward=str(path)), 200)
    honest = run_random(gym.make_vec(TASK, num_envs=2, reward="env"), 200)
    for a, b in zip(fake, honest):
        np.testing.assert_array_equal(a["success"], b["success"])
        np.testing.assert_array_equal(a["env_reward"], b["env_reward"])
        if "episode_stats" in b:
            np.testing.assert_array_equal(a["episode_stats"]["success"], b["episode_stats"]["success"])
            np.testing.assert_array_equal(a["episode_stats"]["env_return"], b["episode_stats"]["env_return"])
    assert not any(i["success"].any() for i in honest)  # a random Hopper never hops 0.5 m: nothing to fake


def test_the_view_spec_is_unreachable_and_immutable(tmp_path):
    from rewardgym.envs.registry import get_task

    for expr in ("state.spec", "state.raw", "state._spec", "state.prev._raw"):
        path = program(tmp_path, f"def compute_reward(state, action):\n    x = {expr}\n    return state.torso_height\n")
        with pytest.raises(ProgramRejected):
            gym.make(TASK, reward=str(path))
    view = get_task(TASK).view
    with pytest.raises(TypeError):
        view.fields["success"] = view.fields["torso_height"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        view.fields = {}  # type: ignore[misc]
    state = StateView(view, {"env_reward": np.zeros(1)})
    with pytest.raises(AttributeError):
        state.spec  # noqa: B018


# -- 4. programs past time, memory or the C stack ------------------------------------------
LOOP_AFTER_50 = """
CALLS = [0]

def compute_reward(state, action):
    CALLS[0] = CALLS[0] + 1
    while CALLS[0] > 50:
        CALLS[0] = CALLS[0] + 1
    return state.torso_height
"""

MEMORY_BOMB = """
def compute_reward(state, action):
    blocks = [np.ones(10**7) + i for i in range(10**4)]
    return state.torso_height
"""

STACK_OVERFLOW = """
def compute_reward(state, action):
    x = [1.0]
    for i in range(300000):
        x = map(abs, x)
    return state.torso_height + sum(x)
"""


@pytest.mark.parametrize("source,kind,lines", [(LOOP_AFTER_50, "timeout", (5, 6)), (MEMORY_BOMB, "memory", (2,)),
                                               (STACK_OVERFLOW, "crash", (5, None))], ids=["loop", "memory", "stack"])
def test_limits_hold_in_gym_make_vec(tmp_path, source, kind, lines):
    path = program(tmp_path, source)
    limits = FAST if kind == "timeout" else ProgramLimits(timeout_s=60.0, memory_mb=256)  # a busy machine is slow
    env = gym.make_vec(TASK, num_envs=2, reward=str(path), reward_limits=limits)
    env.reset(seed=0)
    with pytest.raises(RewardProgramError) as info:
        for _ in range(60):
            env.step(env.action_space.sample())
    assert info.value.kind == kind and info.value.filename == str(path)
    # a loop is caught on its while or its body; a crash names its line when the program's frame was still
    # on the stack (a crash while freeing the nested iterators happens after it)
    assert info.value.line in lines, str(info.value)
    assert str(info.value).startswith(f"{path}:{info.value.line}" if info.value.line else str(path))
    # the caller lives on, and the next call starts a fresh worker
    env.reset(seed=1)
    env.close()


def test_limits_hold_in_gym_make_and_stack_overflow_is_named(tmp_path):
    path = program(tmp_path, STACK_OVERFLOW)
    env = gym.make(TASK, reward=str(path), reward_limits=ProgramLimits(timeout_s=60.0))
    env.reset(seed=0)
    with pytest.raises(RewardProgramError, match="crashed its worker process"):
        env.step(env.action_space.sample())
    env.close()


def test_a_large_matrix_product_runs_in_the_worker(tmp_path):
    # not hostile, but it used to look like it: OpenBLAS started its thread pool on the first
    # large product, the worker's system-call filter refused the threads, and the call hung
    path = program(tmp_path, """
        def compute_reward(state, action):
            a = np.ones((300, 300))
            return state.torso_height * 0.0 + np.sum(np.matmul(a, a)) / 27e6
    """)
    env = gym.make_vec(TASK, num_envs=2, reward=str(path), reward_limits=ProgramLimits(timeout_s=30.0))
    env.reset(seed=0)
    _, reward, *_ = env.step(env.action_space.sample())
    np.testing.assert_allclose(reward, 1.0)
    env.close()


def test_check_reports_a_crash_as_a_crash_not_memory(tmp_path):
    path = program(tmp_path, STACK_OVERFLOW)
    result = cli("check", str(path), "--task", "Hopper-Hop", "--steps", "5", "--num-envs", "1")
    assert result.returncode == 1, result.stderr
    assert "crashed its worker process" in result.stderr and "memory" not in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_train_stops_on_a_looping_program_with_a_checkpoint(tmp_path):
    path = program(tmp_path, LOOP_AFTER_50.replace("> 50", "> 300"))
    result = cli("train", "Hopper-Hop", "--reward", str(path), "--steps", "4096", "--num-envs", "2",
                 "--runs-dir", str(tmp_path / "runs"), "--name", "r", "--reward-timeout", "2",
                 "--config", str(_ppo_config(tmp_path)))
    assert result.returncode == 1, result.stderr
    assert (f"{path}:5" in result.stderr or f"{path}:6" in result.stderr) and "time limit" in result.stderr
    assert "checkpoint saved" in result.stderr and "--resume" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "runs" / "r" / "checkpoints" / "latest.pt").is_file()


def _ppo_config(tmp_path: Path) -> Path:
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_steps": 64, "num_minibatches": 2, "update_epochs": 1}))
    return config


def _worker_of(pid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if "(rg-reward-wkr)" in stat and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                return True
    return False


def test_ctrl_c_stops_a_run_whose_program_hangs(tmp_path, watch_stderr):
    path = program(tmp_path, "def compute_reward(state, action):\n    while True:\n        pass\n")
    proc = subprocess.Popen(CLI + ["train", "Hopper-Hop", "--reward", str(path), "--steps", "4096", "--num-envs",
                                   "2", "--runs-dir", str(tmp_path / "runs"), "--name", "r", "--reward-timeout",
                                   "600", "--config", str(_ppo_config(tmp_path))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr_lines = watch_stderr(proc, "stopping after this update")  # the trainer's answer to the first Ctrl-C
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not _worker_of(proc.pid) and proc.poll() is None:
            time.sleep(0.2)  # poll for the reward worker: the program is running (and hanging)
        assert proc.poll() is None, stderr_lines.text
        proc.send_signal(signal.SIGINT)  # first: "stopping after this update"
        # the second must not merge with the first (signals do not queue): wait until it was handled
        assert stderr_lines.heard.wait(240), stderr_lines.text
        proc.send_signal(signal.SIGINT)  # second: now
        proc.wait(240)  # the bound only guards against a hang
        stderr_lines.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = stderr_lines.text
    assert proc.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert (tmp_path / "runs" / "r" / "checkpoints" / "latest.pt").is_file()
    assert not _worker_of(proc.pid)


# -- 5. the validator on absurd sources --------------------------------------------------------
@pytest.mark.parametrize("source", [
    "def compute_reward(state, action):\n    return " + " + ".join(["state.x"] * 20000) + "\n",
    "X = np.zeros(10**6, dtype='V1000000')\ndef compute_reward(state, action):\n    return state.x\n",
    "# " + "x" * 50_000_000 + "\ndef compute_reward(state, action):\n    return state.x\n",
], ids=["long-chain", "huge-dtype", "50-MB"])
def test_absurd_sources_are_one_line_rejections(source):
    with pytest.raises(ProgramRejected) as info:
        RewardProgram(source, "absurd.py")
    assert len(info.value.violations) == 1 and info.value.violations[0][3]


# -- 6. received run directories --------------------------------------------------------------
class _WritesOnUnpickle:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def _fake_run(tmp_path: Path, reward: str = "expert", **config) -> Path:
    from rewardgym.runs.directory import RUN_FORMAT

    run = tmp_path / "received"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "run_format": RUN_FORMAT, "task": TASK, "reward": reward, "algo": "ppo", "steps": 4096, "num_envs": 1,
        "seed": 0, "hyperparams": {"num_steps": 64, "num_minibatches": 1, "update_epochs": 1}, **config}))
    return run


def test_a_checkpoint_that_runs_code_on_unpickling_is_refused_everywhere(tmp_path):
    target = tmp_path / "pwned.txt"
    run = _fake_run(tmp_path)
    for name in ("latest.pt", "final.pt"):
        (run / "checkpoints" / name).write_bytes(pickle.dumps({"run_format": 1, "agent": _WritesOnUnpickle(str(target))}))
    for args in (["eval", str(run), "--episodes", "1"], ["train", "--resume", str(run)]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "not a readable rewardgym checkpoint" in result.stderr and "Traceback" not in result.stderr
        assert not target.exists()
    with pytest.raises(Exception, match="not a readable rewardgym checkpoint"):
        gym.make(TASK, reward="sparse", shaping=str(run), gamma=0.99)
    assert not target.exists()


def test_a_run_cannot_grant_itself_trust(tmp_path):
    target = tmp_path / "pwned.txt"
    run = _fake_run(tmp_path, reward="reward.py", trusted=True)
    (run / "reward.py").write_text(f"import os\n\ndef compute_reward(state, action):\n"
                                   f"    os.system('touch {target}')\n    return state.torso_height\n")
    (run / "checkpoints" / "latest.pt").write_bytes(b"never read: the reward is refused first")
    result = cli("eval", str(run), "--episodes", "1")
    assert result.returncode == 2 and "import os" in result.stderr, result.stderr
    result = cli("train", "--resume", str(run))
    assert result.returncode == 2 and "import os" in result.stderr, result.stderr
    assert not target.exists()


def test_old_sb3_zip_checkpoints_need_an_explicit_unsafe_flag(tmp_path):
    run = _fake_run(tmp_path, algo="sb3-ppo", hyperparams={"n_steps": 64, "batch_size": 64})
    (run / "checkpoints" / "final.zip").write_bytes(b"PK\x03\x04 not loaded")
    result = cli("eval", str(run), "--episodes", "1")
    assert result.returncode == 2 and "--unsafe-pickle" in result.stderr and "Traceback" not in result.stderr


# -- 7. non-finite numbers -----------------------------------------------------------------------
def test_non_finite_weights_and_hyper_parameters_are_named(tmp_path):
    with pytest.raises(ValueError, match="'1e999'.*not finite"):
        gym.make(TASK, reward="1e999*expert")
    for key, text in (("ent_coef", "NaN"), ("learning_rate", "Infinity")):
        config = tmp_path / f"{key}.json"
        config.write_text(f'{{"{key}": {text}}}')
        result = cli("train", "Hopper-Hop", "--steps", "64", "--config", str(config), "--runs-dir",
                     str(tmp_path / "runs"))
        assert result.returncode == 2 and key in result.stderr and "finite" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_an_infinite_label_in_a_received_store_is_named(tmp_path):
    from rewardgym.intrinsic.store import Label, LabelStore, StoreError

    store = LabelStore(tmp_path / "labels.sqlite", {"annotator": "test"})
    store.put_labels([Label("You find a key.", 1.0)])
    store._conn.execute("UPDATE labels SET value = 1e999")
    with pytest.raises(StoreError, match="labels.sqlite: label of 'You find a key.' has value inf"):
        store.labels()
    with pytest.raises(StoreError, match="finite numbers in"):
        store.put_labels([Label("x", float("nan"))])
    store.close()


def test_a_composition_that_overflows_is_an_error_not_inf(tmp_path):
    path = program(tmp_path, "def compute_reward(state, action):\n    return 1e308 + 0.0 * state.torso_height\n")
    env = gym.make_vec(TASK, num_envs=1, reward=f"{path} + 1e308*sparse + {path}")
    env.reset(seed=0)
    with pytest.raises(FloatingPointError, match="not finite"):
        env.step(env.action_space.sample())
    env.close()


# -- 8. untrusted text is printed literally ---------------------------------------------------------
def test_markup_in_programs_and_paths_is_printed_literally(tmp_path):
    folder = tmp_path / "[bold]x[" / "bold]"  # the path reads ...[bold]x[/bold]...: a closing tag
    folder.mkdir(parents=True)
    path = program(folder, "def compute_reward(state, action):\n    x = '[bold]' + 1\n    return state.torso_height\n",
                   name="r[red].py")
    result = cli("check", str(path), "--task", "Hopper-Hop", "--steps", "2")
    assert result.returncode == 1, result.stderr
    assert "[bold]x[/bold]" in result.stderr and "r[red].py:2" in result.stderr and "x = '[bold]' + 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,option", [
    (["--num-envs", "0"], "--num-envs"), (["--steps", "0"], "--steps"), (["--steps", "-5"], "--steps"),
    (["--timeout", "-1"], "--timeout"), (["--memory-mb", "0"], "--memory-mb"),
])
def test_check_rejects_non_positive_counts_and_limits(tmp_path, args, option):
    path = program(tmp_path, "def compute_reward(state, action):\n    return state.torso_height\n")
    result = cli("check", str(path), "--task", "Hopper-Hop", *args, timeout=120)
    assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


def test_absurd_hyper_parameters_and_crafted_files_are_clean_errors(tmp_path):
    config = tmp_path / "huge.json"
    config.write_text('{"num_steps": 1000000000}')
    result = cli("train", "Hopper-Hop", "--config", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "num_steps" in result.stderr and "Traceback" not in result.stderr
    import torch

    model = tmp_path / "model.pt"
    torch.save({"kind": "rewardgym-perceptual-model", "format": 2}, model)
    demos = tmp_path / "demos.npz"
    np.savez(demos, frames=np.zeros((2, 4, 4, 3), np.uint8), obs=np.zeros((2, 3)), actions=np.zeros((2, 1)),
             episode=np.zeros(2), success=np.zeros(2), meta=np.array(json.dumps({"format": 1})))
    for path in (model, demos):
        result = cli("demos", "show", str(path), timeout=120)
        assert result.returncode == 2 and str(path) in result.stderr and "Traceback" not in result.stderr, \
            result.stderr


def test_the_worker_itself_cannot_open_files_or_signal_its_parent(tmp_path):
    """The OS layer under the validator: code that got into a reward worker anyway (here a
    runner we write ourselves, past any validation) can neither open a file nor kill the caller."""
    import ctypes.util

    from rewardgym.rewards.worker import ProgramLimits, ProgramWorker

    if ctypes.util.find_library("seccomp") is None:
        pytest.skip("libseccomp is not installed: the system-call layer is off (docs/SECURITY.md)")
    target = tmp_path / "escaped.txt"

    def make_runner():
        def run(fn_name, backend, cur, prev, action):
            if fn_name == "compute_reward":
                open(target, "w").write("escaped")  # noqa: SIM115
            else:
                os.kill(os.getppid(), signal.SIGTERM)
            return [], [np.zeros(1)]
        return run

    worker = ProgramWorker(make_runner, "escape.py", ProgramLimits(timeout_s=10), 1 << 10, 65)
    assert worker.seccomp
    batch = {"env_reward": np.zeros(1)}
    for fn in ("compute_reward", "compute_potential"):
        with pytest.raises(RewardProgramError, match="PermissionError|Operation not permitted"):
            worker.call(fn, "numpy", batch, None, None)
        worker = ProgramWorker(make_runner, "escape.py", ProgramLimits(timeout_s=10), 1 << 10, 65)
    worker.close()
    assert not target.exists()


# -- 9. multi-agent programs: nothing a single-agent program cannot do -------------------------------
def test_a_multiagent_program_cannot_fake_success_team_reward_or_env_reward(tmp_path):
    """Per-agent and team reports (success, env_reward, episode statistics) are the task's, whatever
    the program returns: compared with reward="env" on the same seeds and actions."""
    path = program(tmp_path, """
        def compute_reward(state, action):
            huge = 1000.0 + 0.0 * state.agent_collisions
            return huge, {"success": huge, "env_reward": huge}

        def compute_success(state):
            return state.dt > -1.0
        """)
    fake, honest = (rewardgym.make_parallel(MPE, reward=r) for r in (str(path), "env"))
    for env in (fake, honest):
        env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(25):  # one whole episode: its last step reports the statistics
        actions = {a: int(rng.integers(5)) for a in fake.possible_agents}
        _, fake_rewards, _, _, fake_infos = fake.step(actions)
        _, honest_rewards, _, _, honest_infos = honest.step(actions)
        for agent in fake.possible_agents:
            assert fake_rewards[agent] == 1000.0  # the program's reward is the reward, and nothing else
            for key in ("success", "env_reward"):
                assert fake_infos[agent][key] == honest_infos[agent][key]
            assert fake_infos[agent]["reward_terms"]["success"] == 1000.0  # a term, not the success flag
            if "episode_stats" in honest_infos[agent]:
                for key in ("success", "env_return", "final_success", "length"):
                    assert fake_infos[agent]["episode_stats"][key] == honest_infos[agent]["episode_stats"][key]
    assert "episode_stats" in honest_infos["agent_0"] and not any(i["success"] for i in honest_infos.values())
    fake.close(), honest.close()


@pytest.mark.parametrize("body, message", [
    ("return {'agent_0': r, 'agent_1': r, 'agent_2': r, '__all__': r}", "names agent '__all__'"),
    ("return {0: r, 1: r, 2: r}", "names agent 0"),
    ("return np.stack([r] * 3000, axis=1)", "3000 per-agent columns, but this task has 3 agents"),
], ids=["extra key", "index keys", "huge columns"])
def test_per_agent_outputs_cannot_smuggle_keys_or_sizes(tmp_path, body, message):
    path = program(tmp_path, f"def compute_reward(state, action):\n    r = state.dt\n    {body}\n")
    env = rewardgym.make_parallel(MPE, reward=str(path), reward_limits=FAST)
    env.reset(seed=0)
    with pytest.raises(RewardProgramError, match=message) as info:
        env.step({a: 0 for a in env.agents})
    assert info.value.line == 3 and "\n" not in str(info.value)
    env.close()


def test_the_global_state_read_for_critics_is_not_a_field(tmp_path):
    path = program(tmp_path, "def compute_reward(state, action):\n    return state.global_state[:, 0]\n")
    with pytest.raises(ProgramRejected, match="global_state"):
        rewardgym.make_parallel_vec(MPE, 2, reward=str(path), global_state=True)


@pytest.mark.parametrize("source,kind", [(LOOP_AFTER_50.replace("torso_height", "dt"), "timeout"),
                                         (MEMORY_BOMB.replace("torso_height", "dt"), "memory")],
                         ids=["loop", "memory"])
def test_limits_hold_for_multiagent_programs(tmp_path, source, kind):
    path = program(tmp_path, source)
    limits = FAST if kind == "timeout" else ProgramLimits(timeout_s=60.0, memory_mb=256)
    env = rewardgym.make_parallel(MPE, reward=str(path), reward_limits=limits)
    env.reset(seed=0)
    with pytest.raises(RewardProgramError) as info:
        for _ in range(60):
            if not env.agents:
                env.reset()
            env.step({a: 0 for a in env.agents})
    assert info.value.kind == kind and info.value.filename == str(path)
    env.close()


# -- 10. issue 21's classes: validation, lifetimes, received runs, attribute types --------------
# (class 4, data formats: tests/test_hostile_formats.py; class 5, terminal text:
#  tests/test_hostile_terminal.py; class 6, robot floods: tests/test_hostile_robot.py)
def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


HASH_CHAIN = "A0 = ()\n" + "".join(f"A{i} = (A{i - 1}, A{i - 1})\n" for i in range(1, 80)) + "S = {A79}\n"
FANCY_INDEX = "A = np.arange(1000)\nB = A[np.zeros((10**5, 10**5), dtype='int64')]\n"
MANY_ARRAYS = "T = (" + ", ".join(f"np.ones(10**6) + {i}" for i in range(300)) + ")\n"


# 300 arrays of 8 MB reach the memory limit, or on a busy machine the time limit first: either
# limit contains them (the behaviour protected is that the caller never computes them).
@pytest.mark.parametrize("constants,kind", [(HASH_CHAIN, {"timeout"}), (FANCY_INDEX, {"memory"}),
                                            (MANY_ARRAYS, {"memory", "timeout"})],
                         ids=["hash-chain", "fancy-index", "many-arrays"])
def test_constants_are_computed_only_in_the_limited_worker(tmp_path, constants, kind):
    """Class 1: the caller never evaluates a program's constants. Validation admits them (it
    only reads the syntax); the worker computes them under its limits and the run ends with
    an error naming the file and line, while the caller's memory stays where it was."""
    path = program(tmp_path, constants + "def compute_reward(state, action):\n    return state.torso_height\n")
    before = _peak_rss_mb()
    env = gym.make(TASK, reward=str(path), reward_limits=FAST)
    with pytest.raises(RewardProgramError) as info:
        run_random(env, 1)
    env.close()
    assert info.value.kind in kind and str(path) in str(info.value)
    assert "loading" in str(info.value)
    assert _peak_rss_mb() - before < 200  # the 3 GB / 2.5 GB / 2^80 constants never reached the caller


def test_the_critic_rejects_what_validation_cannot_print_and_never_raises(tmp_path):
    """Class 1: an exception inside validation is a rejection of the candidate, not a crash of
    the synthesis run (a literal too long for repr(), an unknown name next to it)."""
    from rewardgym.llm_rewards.critic import critique

    source = "X = 0x" + "f" * 20000 + "\nY = X + nope\ndef compute_reward(state, action):\n    return state.torso_height\n"
    result = critique(source, TASK, tmp_path / "c", steps=2, num_envs=1, timeout_s=30)
    assert not result.ok and result.stage == "validate" and result.line == 2


def test_term_names_are_bounded_over_a_programs_lifetime(tmp_path):
    """Class 2: a program that invents new term names every call is stopped once it has used
    MAX_TERM_NAMES names, before metrics, checkpoints or prompts can swell."""
    from rewardgym.rewards.program import MAX_TERM_NAMES

    path = program(tmp_path, """
        SEEN = []
        def compute_reward(state, action):
            SEEN.append(1)
            return state.torso_height, {f"t{len(SEEN)}": state.torso_height}
        """)
    env = gym.make(TASK, reward=str(path))
    env.reset(seed=0)
    with pytest.raises(RewardProgramError, match="different term names over its lifetime") as info:
        for _ in range(MAX_TERM_NAMES + 5):
            env.step(env.action_space.sample())
    env.close()
    assert info.value.filename == str(path)


def test_a_reward_expression_holds_a_bounded_number_of_workers(tmp_path):
    """Class 2: repeating a program in an expression adds weight, not workers; distinct
    programs per expression are capped (each has its own time and memory limits)."""
    from rewardgym.envs.registry import get_task
    from rewardgym.rewards.resolve import MAX_PROGRAMS, resolve_reward
    from rewardgym.rewards.source import WeightedSum

    path = program(tmp_path, "def compute_reward(state, action):\n    return state.torso_height\n")
    source = resolve_reward(" + ".join([str(path)] * 8), get_task(TASK))
    assert isinstance(source, WeightedSum) and len(source.parts) == 1 and source.parts[0][0] == 8.0
    others = [program(tmp_path, "def compute_reward(state, action):\n    return state.torso_height\n", f"p{i}.py")
              for i in range(MAX_PROGRAMS + 1)]
    with pytest.raises(ValueError, match=f"at most {MAX_PROGRAMS}"):
        resolve_reward(" + ".join(map(str, others)), get_task(TASK))


def test_field_names_reach_nothing_on_values_of_other_types(tmp_path):
    """Class 7: attribute access depends on the value's type. A view field named like an
    attribute of some other object (here `hand_pos` read from a function) gives nothing
    outside a state view."""
    path = program(tmp_path, """
        def helper():
            return 1
        def compute_reward(state, action):
            f = helper
            return state.torso_height + f.torso_height
        """)
    env = gym.make(TASK, reward=str(path))
    with pytest.raises(RewardProgramError, match=r"may not read \.torso_height of a function value") as info:
        run_random(env, 1)
    env.close()
    assert info.value.line == 5


def _received_synthesis(tmp_path: Path, config: dict, state: dict | None = None) -> Path:
    from rewardgym.llm_rewards.synthesize import SYNTH_FORMAT, SynthesisSpec

    run = tmp_path / "received-synth"
    run.mkdir()
    from dataclasses import asdict

    spec = asdict(SynthesisSpec(task=TASK, rounds=2, samples=1, steps=64, num_envs=1, eval_episodes=1))
    (run / "config.json").write_text(json.dumps({"format": SYNTH_FORMAT, **spec, **config}))
    if state is not None:
        (run / "state.json").write_text(json.dumps({"format": SYNTH_FORMAT, **state}))
    return run


def test_a_received_synthesis_run_cannot_direct_the_key_or_read_local_files(tmp_path):
    """Class 3: the endpoint, model and files a received run names are not used. The user's
    key goes only to the user's endpoint; the run's feedback file is never read into a prompt."""
    from rewardgym.testing.openai_server import ScriptedOpenAIServer

    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-FEEDBACK-TEXT")
    prose = [{"kind": "reply", "text": "no code here"}] * 4
    with ScriptedOpenAIServer(prose) as honest, ScriptedOpenAIServer(prose, api_key="other") as attacker:
        attacker_url = attacker.base_url
        run = _received_synthesis(tmp_path, {"base_url": attacker.base_url, "model": attacker.model,
                                             "feedback": str(secret)})
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OPENAI_API_KEY": honest.api_key,
               "OPENAI_BASE_URL": honest.base_url, "REWARDGYM_LLM_MODEL": honest.model,
               "REWARDGYM_LLM_CACHE": str(tmp_path / "cache"), "MUJOCO_GL": "osmesa"}
        result = subprocess.run(CLI + ["synthesize", "--resume", str(run)], capture_output=True, text=True,
                                timeout=300, env=env)
        assert attacker.requests == []  # not one request, so no key, reached the run's endpoint
        assert honest.chat_request_count >= 1
        sent = json.dumps([r.body for r in honest.requests])
        assert "SECRET-FEEDBACK-TEXT" not in sent
    assert "not used" in result.stderr and attacker_url in result.stderr
    assert "SECRET-FEEDBACK-TEXT" not in (run / "state.json").read_text()


def test_a_received_synthesis_state_cannot_name_paths_outside_the_run(tmp_path):
    """Class 3: candidate ids are names, never paths: an id that walks out of the run is a
    one-line error naming state.json, and nothing outside the run is removed or read."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    cand = {"id": "../../victim", "status": "pending", "mode": "whole", "source": "", "todo": None, "attempts": []}
    run = _received_synthesis(tmp_path, {}, {"rounds": [{"round": 0, "candidates": [cand], "designed": True}],
                                             "best": None, "done": False, "timings": {}})
    env = {**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "REWARDGYM_LLM_MODEL": "m",
           "HOME": str(tmp_path)}
    result = subprocess.run(CLI + ["synthesize", "--resume", str(run)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "state.json" in result.stderr and "candidate id" in result.stderr
    assert (victim / "keep.txt").read_text() == "keep"


def test_a_received_training_run_names_no_oni_endpoint_or_file(tmp_path):
    """Class 3: a resumed ONI run keeps its labels in its own directory and takes its LLM
    endpoint from the person resuming it, whatever config.json says."""
    from rewardgym.runs.train import TrainSpec, _reward_kwargs
    from rewardgym.runs.directory import RunDir

    outside = tmp_path / "outside.sqlite"
    run = _fake_run(tmp_path, reward="sparse", intrinsic="oni", oni={
        "annotator": "llm", "base_url": "http://127.0.0.1:9/v1", "llm_model": "theirs", "api_key": "x",
        "store_path": str(outside), "stats_path": str(outside), "transcript_path": str(outside), "beta": 0.2})
    spec = TrainSpec.from_config(json.loads((run / "config.json").read_text()))
    assert spec.oni == {"annotator": "llm", "beta": 0.2}
    options = _reward_kwargs(spec, RunDir(run))["oni"]
    assert all(Path(options[k]).parent == run for k in ("store_path", "stats_path", "transcript_path"))
    assert "base_url" not in options and "llm_model" not in options


def test_a_received_run_reads_only_its_own_reward_files(tmp_path):
    """Class 3: a reward or shaping file named by config.json is the run's own copy or nothing."""
    outside = program(tmp_path, "def compute_reward(state, action):\n    return state.torso_height\n", "mine.py")
    run = _fake_run(tmp_path, reward=f"sparse + 0.1*{outside}")
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    result = cli("eval", str(run), "--episodes", "1")
    assert result.returncode == 2 and "holds no copy" in result.stderr and "Traceback" not in result.stderr
    (run / "mine.py").symlink_to(outside)  # a link out of the run is not a copy
    result = cli("eval", str(run), "--episodes", "1")
    assert result.returncode == 2 and "outside" in result.stderr


def test_the_llm_cache_is_keyed_by_endpoint(tmp_path):
    """Class 3: a reply cached from one server is never served as another server's."""
    from rewardgym.llm.client import LLMClient
    from rewardgym.testing.openai_server import ScriptedOpenAIServer

    messages = [{"role": "user", "content": "hello"}]
    with ScriptedOpenAIServer([{"kind": "reply", "text": "POISON"}]) as one, \
            ScriptedOpenAIServer([{"kind": "reply", "text": "honest"}]) as two:
        first = LLMClient(model=one.model, base_url=one.base_url, api_key=one.api_key, cache_dir=tmp_path / "c")
        assert first.complete(messages).text == "POISON"
        second = LLMClient(model=two.model, base_url=two.base_url, api_key=two.api_key, cache_dir=tmp_path / "c")
        assert second.complete(messages).text == "honest" and two.chat_request_count == 1


@pytest.mark.parametrize("hyper,key", [({"tensorboard_log": "/tmp/elsewhere"}, "tensorboard_log"),
                                       ({"policy_kwargs": {"net_arch": [65536, 65536]}}, "net_arch"),
                                       ({"n_steps": 65536}, "n_steps x num_envs")])
def test_received_sb3_hyper_parameters_are_an_allow_list_with_sizes(tmp_path, hyper, key):
    """Class 3/4: a received sb3-ppo config names no path and no absurd size: refused, naming the
    key, before any env or network is built."""
    from rewardgym.runs.train import resume

    run = _fake_run(tmp_path, algo="sb3-ppo", num_envs=256, hyperparams=hyper)
    with pytest.raises(ValueError, match=key):
        resume(run)
    assert not (tmp_path / "elsewhere").exists()


def test_a_received_run_cannot_point_rewardgyms_writes_outside_it(tmp_path):
    """Class 3: a link planted in a received run (metrics.jsonl -> a file of the user's) is
    refused before anything is written; the target is unchanged."""
    from rewardgym.runs.directory import RunDir, RunError
    from rewardgym.runs.train import resume

    victim = tmp_path / "bashrc"
    victim.write_text("unchanged\n")
    run = _fake_run(tmp_path)
    (run / "metrics.jsonl").symlink_to(victim)
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    with pytest.raises(RunError, match="link to"):
        resume(run)
    with pytest.raises(RunError, match="outside"):
        RunDir.open(run)
    assert victim.read_text() == "unchanged\n"
    result = cli("eval", str(run), "--episodes", "1")
    assert result.returncode == 2 and "outside" in result.stderr and victim.read_text() == "unchanged\n"
