"""validate_source: real escape attempts are rejected with line and construct; real programs pass."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from rewardgym.envs.view import Field, StateView, ViewSpec, raw
from rewardgym.rewards.prelude import prelude_namespace
from rewardgym.rewards.program import RewardProgram
from rewardgym.rewards.prelude import MATH_SUBSET, NUMPY_SUBSET
from rewardgym.rewards.sandbox import (ATTRIBUTE_ALLOWLIST, FORBIDDEN_NAMES, SAFE_BUILTINS, ProgramRejected,
                                       validate_source)

ALLOWED = set(prelude_namespace("numpy"))
FIELDS = ["hand_pos", "obj_pos", "goal_pos", "score", "success", "env_reward", "elapsed_steps"]


def rejected(source: str, view_fields=None) -> list[tuple[int, int, str, str]]:
    with pytest.raises(ProgramRejected) as info:
        validate_source(textwrap.dedent(source), "prog.py", ALLOWED, view_fields)
    assert info.value.filename == "prog.py"
    return info.value.violations


def body(stmt: str) -> str:
    """A valid program with ``stmt`` as line 2, inside compute_reward."""
    return f"def compute_reward(state, action):\n    {stmt}\n    return state.score\n"


# (source, line, col, construct) of one expected violation each
ESCAPES = [
    ("import os\n" + body("pass"), 1, 1, "import os"),
    ("from os import system\n" + body("pass"), 1, 1, "from os import system"),
    ("import numpy.ctypeslib\n" + body("pass"), 1, 1, "import numpy.ctypeslib"),
    ("import subprocess as np\n" + body("pass"), 1, 1, "import subprocess as np"),
    ("from numpy import load\n" + body("pass"), 1, 1, "from numpy import load"),
    ("from rewardgym.rewards.prelude import *\n" + body("pass"), 1, 1, "from rewardgym.rewards.prelude import *"),
    ("from __future__ import annotations\n" + body("pass"), 1, 1, "from __future__ import annotations"),
    ("from . import prelude\n" + body("pass"), 1, 1, "from . import prelude"),
    (body("import numpy as np"), 2, 5, "import numpy as np"),
    (body("m = __import__('os')"), 2, 9, "name '__import__'"),
    (body("s = ().__class__.__bases__[0].__subclasses__()"), 2, 9, "attribute .__subclasses__"),
    (body("s = ().__class__.__bases__[0].__subclasses__()"), 2, 9, "attribute .__class__"),
    (body("b = __builtins__"), 2, 9, "name '__builtins__'"),
    (body("g = compute_reward.__globals__"), 2, 9, "attribute .__globals__"),
    (body("f = getattr(np, 'load')"), 2, 9, "name 'getattr'"),
    (body("x = np.load('x.npy')"), 2, 9, "np.load"),
    (body("np.save('x.npy', action)"), 2, 5, "np.save"),
    (body("x = np.fromfile('/etc/passwd')"), 2, 9, "np.fromfile"),
    (body("x = np.memmap('/dev/mem')"), 2, 9, "np.memmap"),
    (body("x = np.ctypeslib"), 2, 9, "np.ctypeslib"),
    (body("x = np.lib.stride_tricks.as_strided(action, (10**9,), (0,))"), 2, 9, "np.lib"),
    (body("x = np.random.rand(3)"), 2, 9, "np.random"),
    (body("np.seterr(all='ignore')"), 2, 5, "np.seterr"),
    (body("x = np.clamp(action, 0, 1)"), 2, 9, "np.clamp"),
    (body("f = open('f')"), 2, 9, "name 'open'"),
    (body("x = eval('1')"), 2, 9, "name 'eval'"),
    (body("exec('x = 1')"), 2, 5, "name 'exec'"),
    (body("c = compile('1', 'f', 'eval')"), 2, 9, "name 'compile'"),
    (body("g = globals()"), 2, 9, "name 'globals'"),
    (body("v = vars(state)"), 2, 9, "name 'vars'"),
    (body("t = type(action)"), 2, 9, "name 'type'"),
    (body("print(action)"), 2, 5, "name 'print'"),
    (body("f = lambda: (yield)"), 2, 18, "yield"),
    (body("f = (i for i in range(3)).gi_frame.f_back.f_globals"), 2, 9, "attribute .gi_frame"),
    (body("f = (i for i in range(3)).gi_frame.f_back.f_globals"), 2, 9, "attribute .f_globals"),
    (body("s = '{0.__class__}'.format(state)"), 2, 9, "attribute .format"),
    (body("s = '{x}'.format_map({'x': state})"), 2, 9, "attribute .format_map"),
    (body("p = action.ctypes.data"), 2, 9, "attribute .ctypes"),
    (body("action.tofile('out.bin')"), 2, 5, "attribute .tofile"),
    (body("m = type.mro(int)"), 2, 9, "attribute .mro"),
    (body("r = state._raw"), 2, 9, "attribute ._raw"),
    (body("np.pi = 3.0"), 2, 5, "attribute .pi"),
    (body("m = np"), 2, 9, "name 'np'"),
    (body("np = 1"), 2, 5, "name 'np'"),
    (body("state.hand_pos[0] = 0.0"), 2, 5, "assignment to state.hand_pos[0]"),
    ("class X:\n    pass\n" + body("pass"), 1, 1, "class definition"),
    (body("try:\n        x = 1\n    except ValueError:\n        x = 0"), 2, 5, "try statement"),
    (body("with open('f') as fh:\n        pass"), 2, 5, "with statement"),
    (body("with open('f') as fh:\n        pass"), 2, 10, "name 'open'"),
    (body("global x"), 2, 5, "global statement"),
    ("@staticmethod\n" + body("pass"), 1, 2, "@staticmethod"),
    ("async def helper():\n    return 1\n" + body("pass"), 1, 1, "async def"),
    (body("match action:\n        case _:\n            pass"), 2, 5, "match statement"),
    (body("x = undefined_helper(state)"), 2, 9, "name 'undefined_helper'"),
    ("X = distance(np.zeros(3), np.ones(3))\n" + body("pass"), 1, 5, "call distance()"),
    ("print('loading')\n" + body("pass"), 1, 1, "module-level expr"),
    ("for i in range(3):\n    pass\n" + body("pass"), 1, 1, "module-level for"),
    ("if __name__ == '__main__':\n    pass\n" + body("pass"), 1, 4, "name '__name__'"),
    ("def compute_reward(state):\n    return state.score\n", 1, 1, "def compute_reward"),
    (body("pass") + "def compute_success(state, action):\n    return state.success\n", 4, 1, "def compute_success"),
    ("def reward(state, action):\n    return state.score\n", 1, 1, "compute_reward"),
]


@pytest.mark.parametrize("source,line,col,construct", ESCAPES,
                         ids=[f"{i}-{e[3][:30]}" for i, e in enumerate(ESCAPES)])
def test_escape_attempts_are_rejected_at_their_line(source, line, col, construct):
    violations = rejected(source)
    assert (line, col, construct) in [v[:3] for v in violations], violations


@pytest.mark.parametrize("expr,construct", [
    ("state.no_such_field", "state.no_such_field"),
    ("state.prev.no_such_field", "state.prev.no_such_field"),
    ("s.hand_poss", "s.hand_poss"),
])
def test_unknown_state_fields_with_view_fields(expr, construct):
    param = "s" if expr.startswith("s.") else "state"
    source = f"def compute_reward({param}, action):\n    x = 1.0\n    return {expr}\n"
    violations = rejected(source, view_fields=FIELDS)
    assert len(violations) == 1
    line, col, what, why = violations[0]
    assert (line, col, what) == (3, 12, construct)
    assert "unknown state field" in why and "the view's fields are: hand_pos, obj_pos" in why
    if "hand_poss" in expr:
        assert "did you mean 'hand_pos'" in why
    # without a view the field names are not checked statically
    validate_source(source, "prog.py", ALLOWED)


def test_state_fields_checked_in_potential_and_success_too():
    source = body("pass") + ("def compute_potential(st):\n    return -st.prev.prev.score\n"
                             "def compute_success(x):\n    return x.sucess\n")
    found = {(v[0], v[2]) for v in rejected(source, view_fields=FIELDS)}
    assert found == {(5, "st.prev.prev"), (7, "x.sucess")}


def test_every_violation_is_listed_and_formatted():
    source = ("import os\n"
              "def compute_reward(state, action):\n"
              "    x = eval('1')\n"
              "    try:\n"
              "        y = np.load('f')\n"
              "    except ValueError:\n"
              "        y = 0\n"
              "    return state.nope + y\n")
    with pytest.raises(ProgramRejected) as info:
        validate_source(source, "prog.py", ALLOWED, FIELDS)
    lines = [(v[0], v[2]) for v in info.value.violations]
    assert lines == [(1, "import os"), (3, "name 'eval'"), (4, "try statement"), (5, "np.load"),
                     (8, "state.nope")]
    message = str(info.value)
    assert "prog.py:3:9: name 'eval': eval is reserved" in message
    assert "prog.py:4:5: try statement: try/except is not allowed" in message
    assert "silent zero" in message


def test_syntax_error_is_a_violation_with_position():
    violations = rejected("def compute_reward(state, action):\n    return (state.x +\n")
    assert len(violations) == 1 and violations[0][2] == "syntax error"
    assert violations[0][0] == 2


def test_numpy_and_math_are_allow_lists_not_deny_lists():
    """Every public numpy/math name outside the allow-list is rejected, whatever it does (by
    construction: the test walks numpy as installed, so a new numpy release cannot add a hole)."""
    outside = [n for n in dir(np) if not n.startswith("_") and n not in NUMPY_SUBSET]
    assert {"lib", "ctypeslib", "f2py", "testing", "random", "load", "save", "memmap", "test",
            "vectorize", "frompyfunc", "copyto", "put", "place"} <= set(outside)
    source = "".join(f"def f{i}(x):\n    return np.{n}\n" for i, n in enumerate(outside)) + body("pass")
    found = {v[2] for v in rejected(source)}
    assert found == {f"np.{n}" for n in outside}
    linalg_outside = [n for n in dir(np.linalg) if not n.startswith("_") and f"linalg.{n}" not in NUMPY_SUBSET]
    source = "".join(f"def f{i}(x):\n    return np.linalg.{n}\n" for i, n in enumerate(linalg_outside)) + body("pass")
    assert {v[2] for v in rejected(source)} == {f"np.linalg.{n}" for n in linalg_outside}
    import math

    math_outside = [n for n in dir(math) if not n.startswith("_") and n not in MATH_SUBSET]
    source = "import math\n" + "".join(f"def f{i}(x):\n    return math.{n}\n"
                                      for i, n in enumerate(math_outside)) + body("pass")
    assert {v[2] for v in rejected(source)} == {f"math.{n}" for n in math_outside}


def test_runtime_namespaces_hold_exactly_the_allow_list():
    for backend in ("numpy", "torch"):
        ns = prelude_namespace(backend)["np"]
        names = {n for n in dir(ns)} | {f"linalg.{n}" for n in dir(ns.linalg)}
        assert names - {"linalg"} == set(NUMPY_SUBSET), backend
        with pytest.raises(AttributeError, match="not available to reward programs"):
            ns.load  # noqa: B018
        with pytest.raises(AttributeError, match="read-only"):
            ns.pi = 3.0


@pytest.mark.parametrize("attr", ["ctypes", "tofile", "setflags", "flags", "base", "data", "view", "fill",
                                  "resize", "sort", "untyped_storage", "storage", "numpy", "add_", "copy_",
                                  "format", "format_map", "dtype", "mro", "gi_frame", "f_globals"])
def test_attributes_outside_the_allow_list_are_rejected_on_any_value(attr):
    assert attr not in ATTRIBUTE_ALLOWLIST
    found = rejected(body(f"x = state.hand_pos.{attr}"), view_fields=FIELDS)
    assert [v[2] for v in found] == [f"attribute .{attr}"]
    found = rejected(body(f"x = action.{attr}"))  # without a view too
    assert [v[2] for v in found] == [f"attribute .{attr}"]


def test_out_keyword_is_rejected():
    found = rejected(body("y = np.maximum(state.score, 1.0, out=state.score)"), view_fields=FIELDS)
    assert [v[2] for v in found] == ["keyword out="]


def test_validator_caps_are_one_line_rejections():
    huge = "X = 1\n" * 30_000 + body("pass")
    assert [v[3] for v in rejected(huge)][0].startswith("the program is")
    chain = body("x = " + " + ".join(["1"] * 5000))
    assert len(rejected(chain)) == 1
    deep = body("x = " + "abs(" * 150 + "1" + ")" * 150)
    assert [v[3] for v in rejected(deep)][0].startswith("the program is too large to validate: expressions nested")
    huge_parse = "x = " + "[" * 1000 + "]" * 1000 + "\n" + body("pass")
    assert len(rejected(huge_parse)) == 1


@pytest.mark.parametrize("const", ["np.zeros(10**6, dtype='V1000000')", "np.full(10**5, 'x' * 99999)",
                                   "np.array(['x' * 99999] * 1000)", "np.zeros(10, dtype=np.float64) + np.array('x')"])
def test_import_time_numpy_calls_take_numbers_only(const):
    assert rejected(f"X = {const}\n" + body("pass"))


def test_forbidden_builtins_are_not_in_safe_builtins():
    assert not set(FORBIDDEN_NAMES) & set(SAFE_BUILTINS)
    assert "__import__" not in SAFE_BUILTINS and "print" not in SAFE_BUILTINS


HEAVY_CONSTANTS = {
    "hashing": "A0 = ()\n" + "".join(f"A{i} = (A{i - 1}, A{i - 1})\n" for i in range(1, 80)) + "S = {A79}\n",
    "fancy indexing": "A = np.arange(1000)\nB = A[np.zeros((10**5, 10**5), dtype='int64')]\n",
    "many arrays": "T = (" + ", ".join(f"np.ones(10**6) + {i}" for i in range(300)) + ")\n",
    "power": "X = 9**9**9\n",
    "repetition": "X = [0] * 10**10\n",
}


@pytest.mark.parametrize("name", sorted(HEAVY_CONSTANTS))
def test_validation_never_evaluates_constants(name):
    """Validation is a walk over the syntax: a constant that would hang or swell the caller
    (hash chains, fancy indexing, hundreds of arrays, huge powers) costs it nothing; its value
    is computed only in the reward worker, under its limits (tests/test_hostile.py)."""
    validate_source(HEAVY_CONSTANTS[name] + body("pass"), "p.py", allowed_globals=set(prelude_namespace("numpy")))


def test_huge_literals_are_rejections_not_crashes():
    """A literal too long to print (repr refuses it) still gives a one-line rejection naming it."""
    found = rejected("X = 0x" + "f" * 20000 + "\nY = X + 'a'\nZ = 1" + "0" * 5000 + "\n" + body("pass"))
    assert len(found) == 1 and found[0][2] == "syntax error"  # the decimal literal: Python's own limit
    found = rejected("X = 0x" + "f" * 20000 + "\nY = nope\n" + body("pass"))
    assert found and found[0][:2] == (2, 5)


GOOD = '''\
"""Text2Reward-style dense reward for a pick-and-place task."""
import math
import numpy as np
from rewardgym.rewards.prelude import tolerance

GOAL_TOLERANCE = 0.05  # m
WEIGHTS = {"reach": 1.0, "place": 2.0, "progress": 10.0}
UP = np.array([0.0, 0.0, 1.0])
HALF_TURN: float = math.pi
SCALES = (1.0, 0.5, 0.25)
TURN = 2 * HALF_TURN - np.pi / 2.0


def reach_reward(hand, obj, scale=0.1):
    """exp-shaped reach term on the hand-object distance (B,)."""
    d = distance(hand, obj)
    return np.exp(-d / scale)


def compute_reward(state, action) -> tuple:
    reach = reach_reward(state.hand_pos, state.obj_pos)
    obj_to_goal = np.linalg.norm(state.obj_pos - state.goal_pos, axis=-1)
    place = tolerance(obj_to_goal, 0.0, GOAL_TOLERANCE, margin=0.2)
    progress = state.score - state.prev.score
    lifted = np.where(state.obj_pos[:, 2] > 0.02, 1.0, 0.0)
    ctrl = -1e-3 * np.sum(action[..., :3] ** 2, axis=-1)
    if (n := state.batch_size) < 1:
        raise ValueError(f"empty batch of {n} states")
    terms = {"reach": reach, "place": place, "progress": progress}
    terms = {k: WEIGHTS[k] * v for k, v in terms.items()}
    terms["lifted"] = lifted * sum(SCALES[:1])
    terms["ctrl"] = ctrl
    for i, name in enumerate(sorted(terms)):
        assert terms[name].shape == (n,), f"term {name} #{i} has shape {terms[name].shape}"
    total = sum(terms.values())
    upright = np.abs(UP[2] - 1.0) < 1e-9 and HALF_TURN > 3
    del upright
    squash = lambda x, s=1.0: np.tanh(x / s)  # noqa: E731
    total = total + 0.0 * squash(total)
    return total, terms


def compute_potential(state):
    def inner(s):
        return -distance(s.obj_pos, s.goal_pos)
    return inner(state)


def compute_success(state, *, tol=GOAL_TOLERANCE):
    return np.linalg.norm(state.obj_pos - state.goal_pos, axis=-1) < tol
'''


def _view_and_state(b: int = 4):
    spec = ViewSpec.build("test", "A test view.", [
        Field(n, "(B, 3)" if n.endswith("pos") else "(B,)", "-", n, raw(n))
        for n in ("hand_pos", "obj_pos", "goal_pos", "score")])
    rng = np.random.default_rng(0)
    row = lambda: {"hand_pos": rng.normal(size=(b, 3)), "obj_pos": rng.normal(size=(b, 3)),  # noqa: E731
                   "goal_pos": rng.normal(size=(b, 3)), "score": rng.normal(size=b),
                   "env_reward": np.zeros(b), "success": np.zeros(b, bool), "elapsed_steps": np.ones(b, np.int64)}
    return spec, StateView(spec, row(), row())


def test_realistic_program_passes_and_runs_with_the_sandbox_builtins():
    spec, state = _view_and_state()
    validate_source(GOOD, "good.py", ALLOWED, list(spec.fields))
    program = RewardProgram(GOOD, "good.py", view=spec)  # untrusted: SAFE_BUILTINS only
    reward, terms = program.compute_reward(state, np.zeros((4, 4)))
    assert reward.shape == (4,) and set(terms) == {"reach", "place", "progress", "lifted", "ctrl"}
    np.testing.assert_allclose(terms["progress"], 10.0 * (state.score - state.prev.score))
    assert program.compute_potential(state).shape == (4,)
    assert program.compute_success(state).dtype == bool


def test_minimal_programs_pass():
    validate_source("def compute_reward(s, a):\n    return s.score\n", "p.py", ALLOWED, FIELDS)
    validate_source("import numpy as np\n\ndef compute_reward(state, action, scale=2.0):\n"
                    "    return np.tanh(state.score / scale), {}\n", "p.py", ALLOWED, FIELDS)
    validate_source("def compute_reward(*args):\n    return args[0].score\n", "p.py", ALLOWED, FIELDS)


def test_every_shipped_expert_program_passes_against_its_view():
    from rewardgym.envs.registry import all_tasks, get_task

    checked = 0
    for task_id in all_tasks():
        task = get_task(task_id)
        if task.expert_path is not None and task.expert_path.is_file():
            validate_source(task.expert_path.read_text(), str(task.expert_path), ALLOWED, list(task.view.fields))
            checked += 1
    assert checked >= 10
