"""NetHack (NLE 1.3.0) and MiniHack (1.0.2) tasks: one state view for both families.

The NetHack Learning Environment (Küttler et al., NeurIPS 2020, arXiv:2006.13760) wraps
the real NetHack 3.6 game; MiniHack (Samvelyan et al., NeurIPS 2021 Datasets & Benchmarks,
arXiv:2109.13202) builds small RL tasks on top of it from level description files. Both
expose the same game structures, so both families share :data:`VIEW`.

Raw rows are read from the arrays NLE keeps for its last step
(``env.unwrapped.last_observation``: ``blstats``, ``glyphs``, ``message``, ``inv_strs``
and the ``internal`` vector with the down-stairs flag and the hero's nutrition), not from
the (possibly cropped) agent observation. Two details of NLE matter:

* When a task ends the episode itself (success or step limit) NLE quits the game, which
  blanks every observation array. :class:`NetHackTaskEnv` therefore takes the reading in
  NLE's ``_quit_game`` hook, *before* the game is quit, so the terminal row is the state
  NLE judged (e.g. the hero standing on ``>``).
* When the hero dies the arrays are blank too; that terminal row repeats the last live
  reading with ``hp`` set to 0 and ``end_status`` = 1.

Seeding: ``reset(seed=s)`` seeds NetHack's own core/disp RNGs (``reseed=False``), and later
resets draw fresh NetHack seeds from that stream, so runs are reproducible from the seed
while every episode still gets a new dungeon.

Size: above 600 lines because one family: the NetHack/MiniHack view (every field documented,
as the LLM reads it), its batch readers and its tasks; they change together.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np

from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import Field, RawBatch, ViewSpec, raw

# ----------------------------------------------------------------------------------
# Constants (NetHack 3.6 / NLE 1.3.0), fixed so that this module imports without nle.
# ----------------------------------------------------------------------------------
ROWS, COLS = 21, 79  # nle.nethack.DUNGEON_SHAPE
FAR = 1000  # distance reported when the thing is not displayed on the current level
BLSTATS = {  # nle.nethack.NLE_BL_* indices into blstats (27,)
    "x": 0, "y": 1, "strength": 2, "strength_pct": 3, "dexterity": 4, "constitution": 5,
    "intelligence": 6, "wisdom": 7, "charisma": 8, "score": 9, "hp": 10, "max_hp": 11,
    "depth": 12, "gold": 13, "energy": 14, "max_energy": 15, "armor_class": 16,
    "monster_level": 17, "xp_level": 18, "xp_points": 19, "time": 20, "hunger": 21,
    "carrying_capacity": 22, "dungeon_number": 23, "dlevel": 24, "condition": 25,
    "alignment": 26,
}
END_RUNNING, END_DEATH, END_TASK_SUCCESSFUL, END_ABORTED = 0, 1, 2, -1

# Observation keys given to the agent (the raw reading does not depend on them). MiniHack
# gets the same keys, without its egocentric "*_crop" views: MiniHack cuts each with a
# np.pad of the whole map every step (a quarter of a MiniHack step for the four), while
# rewardgym's NetHack policy cuts its crop from "glyphs" for the whole batch at once.
# observation_keys=(...) in gym.make / gym.make_vec asks for other keys.
NETHACK_OBS_KEYS = ("glyphs", "chars", "colors", "specials", "blstats", "message",
                    "inv_glyphs", "inv_strs", "inv_letters", "inv_oclasses")
MINIHACK_OBS_KEYS = NETHACK_OBS_KEYS


@functools.lru_cache(maxsize=1)
def glyph_tables() -> dict[str, np.ndarray]:
    """Boolean lookup tables ``(MAX_GLYPH + 1,)`` per glyph category (built from nle once)."""
    from nle import nethack

    n = nethack.MAX_GLYPH + 1
    nummons = nethack.NUMMONS

    def table(*ranges: tuple[int, int]) -> np.ndarray:
        t = np.zeros(n, dtype=bool)
        for lo, hi in ranges:
            t[lo:hi] = True
        return t

    cmap = nethack.GLYPH_CMAP_OFF
    up = [i for i in range(nethack.MAXPCHARS) if nethack.symdef.from_idx(i).explanation == "staircase up"]
    down = [i for i in range(nethack.MAXPCHARS) if nethack.symdef.from_idx(i).explanation == "staircase down"]
    oracle = next(g for g in range(nethack.GLYPH_MON_OFF, nethack.GLYPH_PET_OFF)
                  if nethack.permonst(nethack.glyph_to_mon(g)).mname == "Oracle")
    objclass = [ord(nethack.objclass(i).oc_class) for i in range(nethack.NUM_OBJECTS)]
    obj = nethack.GLYPH_OBJ_OFF
    gold = [obj + i for i, c in enumerate(objclass) if c == nethack.COIN_CLASS]
    food = [obj + i for i, c in enumerate(objclass) if c == nethack.FOOD_CLASS]
    food_t = table((nethack.GLYPH_BODY_OFF, nethack.GLYPH_BODY_OFF + nummons))
    food_t[food] = True
    gold_t = np.zeros(n, dtype=bool)
    gold_t[gold] = True
    return {
        "stairs_down": table((cmap + down[0], cmap + down[0] + 1)),
        "stairs_up": table((cmap + up[0], cmap + up[0] + 1)),
        "pet": table((nethack.GLYPH_PET_OFF, nethack.GLYPH_PET_OFF + nummons)),
        "monster": table((nethack.GLYPH_MON_OFF, nethack.GLYPH_MON_OFF + nummons),
                         (nethack.GLYPH_DETECT_OFF, nethack.GLYPH_DETECT_OFF + nummons),
                         (nethack.GLYPH_INVISIBLE, nethack.GLYPH_INVISIBLE + 1)),
        "oracle": table((oracle, oracle + 1)),
        "gold": gold_t,
        "food": food_t,
        "unexplored": table((cmap, cmap + 1)),  # S_stone: blank, never seen
    }


GLYPH_CATEGORIES: tuple[str, ...] = (
    "unexplored", "wall", "door", "floor", "corridor", "stairs_up", "stairs_down", "feature", "liquid",
    "trap", "monster", "pet", "gold", "food", "boulder", "object", "effect")
"""Semantic categories of :func:`glyph_categories`, in id order."""


@functools.lru_cache(maxsize=1)
def glyph_categories() -> np.ndarray:
    """Category id (index into :data:`GLYPH_CATEGORIES`) of every glyph, ``(MAX_GLYPH + 1,)`` uint8.

    A compact, fixed encoding of what a map cell shows, for encoders that cannot afford a
    learned embedding of all 5,976 glyphs over the whole 21 x 79 map: dungeon features by
    their map symbol (``unexplored`` is blank stone; ``wall`` includes iron bars and trees,
    ``door`` doorways and open/closed doors, ``feature`` altars, thrones, fountains, sinks,
    graves, drawbridges, air and clouds; ``liquid`` water, ice and lava; ``trap`` every trap),
    monsters (``monster``: hostile or peaceful, detected, invisible, ridden, warnings) apart
    from ``pet``, objects by class (``gold``, ``food`` incl. corpses, ``boulder`` incl.
    statues, ``object`` the rest) and ``effect`` (explosions, zaps, engulfing).
    """
    from nle import nethack

    cat = np.full(nethack.MAX_GLYPH + 1, GLYPH_CATEGORIES.index("object"), dtype=np.uint8)
    ids = {name: i for i, name in enumerate(GLYPH_CATEGORIES)}
    by_symbol = {"wall": "wall", "iron bars": "wall", "tree": "wall", "doorway": "door", "open door": "door",
                 "closed door": "door", "floor of a room": "floor", "dark part of a room": "floor",
                 "corridor": "corridor", "lit corridor": "corridor", "staircase up": "stairs_up",
                 "ladder up": "stairs_up", "staircase down": "stairs_down", "ladder down": "stairs_down",
                 "water": "liquid", "ice": "liquid", "molten lava": "liquid"}
    names = [nethack.symdef.from_idx(i).explanation for i in range(nethack.MAXPCHARS)]
    first_trap, last_trap = names.index("arrow trap"), names.index("vibrating square")
    for i, name in enumerate(names):
        if i == 0:
            kind = "unexplored"  # S_stone: blank, never seen (also named "dark part of a room")
        elif first_trap <= i <= last_trap:
            kind = "trap"
        elif i > last_trap:
            kind = "effect"  # beams, explosions, swallowing, "poison cloud" ...
        else:
            kind = by_symbol.get(name, "feature")
        cat[nethack.GLYPH_CMAP_OFF + i] = ids[kind]
    nummons = nethack.NUMMONS
    for off in (nethack.GLYPH_MON_OFF, nethack.GLYPH_DETECT_OFF, nethack.GLYPH_RIDDEN_OFF):
        cat[off:off + nummons] = ids["monster"]
    cat[nethack.GLYPH_INVISIBLE] = ids["monster"]
    cat[nethack.GLYPH_WARNING_OFF:nethack.GLYPH_STATUE_OFF] = ids["monster"]
    cat[nethack.GLYPH_PET_OFF:nethack.GLYPH_PET_OFF + nummons] = ids["pet"]
    cat[nethack.GLYPH_BODY_OFF:nethack.GLYPH_BODY_OFF + nummons] = ids["food"]
    cat[nethack.GLYPH_STATUE_OFF:nethack.MAX_GLYPH + 1] = ids["boulder"]
    cat[nethack.GLYPH_EXPLODE_OFF:nethack.GLYPH_WARNING_OFF] = ids["effect"]
    for i in range(nethack.NUM_OBJECTS):
        glyph = nethack.GLYPH_OBJ_OFF + i
        oclass = ord(nethack.objclass(i).oc_class)
        if oclass == nethack.COIN_CLASS:
            cat[glyph] = ids["gold"]
        elif oclass == nethack.FOOD_CLASS:
            cat[glyph] = ids["food"]
        elif nethack.objdescr.from_idx(i).oc_name == "boulder":
            cat[glyph] = ids["boulder"]
    return cat


# ----------------------------------------------------------------------------------
# Batched field computations (raw batch -> (B,) arrays)
# ----------------------------------------------------------------------------------
def _bl(name: str):
    idx = BLSTATS[name]

    def compute(batch: RawBatch) -> np.ndarray:
        return batch["blstats"][:, idx].astype(np.int64)

    compute.__name__ = f"blstats_{name}"
    return compute


_DY = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
_DX = np.array([-1, 0, 1, -1, 1, -1, 0, 1])


def _neighbours(batch: RawBatch) -> np.ndarray:
    """Glyphs of the 8 cells around the hero, ``(B, 8)``."""
    glyphs, bl = batch["glyphs"], batch["blstats"]
    yy = np.clip(bl[:, 1:2] + _DY, 0, ROWS - 1)
    xx = np.clip(bl[:, 0:1] + _DX, 0, COLS - 1)
    return glyphs[np.arange(len(glyphs))[:, None], yy, xx]


def _count_adjacent(category: str):
    def compute(batch: RawBatch) -> np.ndarray:
        return glyph_tables()[category][_neighbours(batch)].sum(axis=1).astype(np.int64)

    compute.__name__ = f"{category}_adjacent"
    return compute


def _any_adjacent(category: str):
    count = _count_adjacent(category)

    def compute(batch: RawBatch) -> np.ndarray:
        return count(batch) > 0

    compute.__name__ = f"{category}_adjacent"
    return compute


def _nearest(category: str, zero_if: str | None = None):
    """Chebyshev distance in cells from the hero to the closest displayed glyph of a category."""

    def compute(batch: RawBatch) -> np.ndarray:
        glyphs, bl = batch["glyphs"], batch["blstats"]
        mask = glyph_tables()[category][glyphs]  # (B, 21, 79)
        dy = np.abs(np.arange(ROWS)[None, :, None] - bl[:, 1, None, None])
        dx = np.abs(np.arange(COLS)[None, None, :] - bl[:, 0, None, None])
        dist = np.where(mask, np.maximum(dy, dx), FAR).min(axis=(1, 2)).astype(np.float64)
        if zero_if is not None:
            dist = np.where(batch[zero_if], 0.0, dist)
        return dist

    compute.__name__ = f"{category}_distance"
    return compute


def _visible(category: str, also: str | None = None):
    def compute(batch: RawBatch) -> np.ndarray:
        seen = glyph_tables()[category][batch["glyphs"]].any(axis=(1, 2))
        return seen | batch[also].astype(bool) if also is not None else seen

    compute.__name__ = f"{category}_visible"
    return compute


def _object_array(key: str):
    def compute(batch: RawBatch) -> np.ndarray:
        value = batch[key]
        if value.dtype != object:  # a stacked batch of plain str gives a unicode array
            out = np.empty(len(value), dtype=object)
            out[:] = list(value)
            return out
        return value

    compute.__name__ = f"raw_{key}"
    return compute


_HUNGER = ("0 Satiated, 1 Not hungry, 2 Hungry, 3 Weak, 4 Fainting, 5 Fainted, 6 Starved")
_BL_DOCS = {
    "x": ("cell", "Hero map column, 0..78 (blstats); the map is glyphs[y, x] with x to the east."),
    "y": ("cell", "Hero map row, 0..20 (blstats); y grows to the south."),
    "strength": ("-", "Strength on NLE's 3..25 scale (exceptional 18/xx strength maps to about 19..21); "
                 "strength_pct is finer."),
    "strength_pct": ("-", "Strength on NetHack's internal 3..125 scale: 3..18 plain, 18/xx is 18+xx "
                     "(18/** is 118), 19..25 are 119..125."),
    "dexterity": ("-", "Dexterity attribute, 3..25."),
    "constitution": ("-", "Constitution attribute, 3..25."),
    "intelligence": ("-", "Intelligence attribute, 3..25."),
    "wisdom": ("-", "Wisdom attribute, 3..25."),
    "charisma": ("-", "Charisma attribute, 3..25."),
    "score": ("points", "In-game score shown on the bottom line (botl_score: experience points + "
              "50 per dungeon level below 1 reached + gold); NLE's Score reward is its increase."),
    "hp": ("hp", "Current hit points; 0 on the step the hero dies."),
    "max_hp": ("hp", "Maximum hit points."),
    "depth": ("levels", "Absolute depth of the current level below the surface (1 = first level; "
              "larger = deeper, across branches)."),
    "gold": ("zorkmids", "Gold pieces carried."),
    "energy": ("pw", "Current spell energy (power)."),
    "max_energy": ("pw", "Maximum spell energy."),
    "armor_class": ("-", "Armor class; LOWER is better (starts around 10 and can go negative)."),
    "monster_level": ("-", "Hit dice when polymorphed into a monster, else 0."),
    "xp_level": ("-", "Experience level (1..30)."),
    "xp_points": ("points", "Experience points."),
    "time": ("turns", "In-game turn counter (moves); unchanged by actions that take no game time (menus, "
             "walking into walls), which NLE's tasks penalise."),
    "hunger": ("code", f"Hunger state code: {_HUNGER}; larger than 1 means the hero needs food."),
    "carrying_capacity": ("code", "Encumbrance: 0 Unencumbered, 1 Burdened, 2 Stressed, 3 Strained, "
                          "4 Overtaxed, 5 Overloaded."),
    "dungeon_number": ("code", "Dungeon branch: 0 Dungeons of Doom, 1 Gehennom, 2 Gnomish Mines, 3 Quest, "
                       "4 Sokoban, 5 Fort Ludios, 6 Vlad's Tower, 7 Elemental Planes."),
    "dlevel": ("levels", "Level number within the current dungeon branch (as on the bottom line 'Dlvl')."),
    "condition": ("bitmask", "Status conditions bitmask: 1 Stone, 2 Slime, 4 Strangled, 8 Food poisoning, "
                  "16 Terminally ill, 32 Blind, 64 Deaf, 128 Stunned, 256 Confused, 512 Hallucinating, "
                  "1024 Levitating, 2048 Flying, 4096 Riding; test with (state.condition & 32) > 0."),
    "alignment": ("code", "Hero alignment: -1 chaotic, 0 neutral, 1 lawful."),
}

VIEW = ViewSpec.build(
    "nethack",
    doc=(
        "NetHack 3.6 via NLE (and MiniHack levels built on it). The map is 21 rows x 79 columns of "
        "glyphs; the hero is at column x, row y; distances are Chebyshev (king-move) distances in "
        "cells between map positions, ignoring walls, and equal 1000 when the target is not "
        "displayed on the current level's map (seen now or remembered). 'Displayed' means what the "
        "player sees on screen: an object or monster standing on a staircase hides it. Strings: "
        "state.message is a (B,) numpy object array of str and state.inventory a (B,) object array "
        "of tuples of str; use Python string operations, e.g. "
        "np.array([('You kill' in m) for m in state.message]) or "
        "np.char.find(state.message.astype(str), 'You kill') >= 0. "
        "end_status is NLE's episode status: 0 running, 1 death, 2 task successful, -1 aborted "
        "(step limit). On the step the hero dies, NLE blanks its observation, so that row repeats "
        "the last live reading with hp = 0."
    ),
    fields=[
        *[Field(name, "(B,)", unit, doc, _bl(name)) for name, (unit, doc) in _BL_DOCS.items()],
        Field("message", "(B,)", "str",
              "Top-line game message produced by this step, decoded text without surrounding "
              "spaces ('' when none), e.g. 'You kill the newt!' or 'It's a wall.'.",
              _object_array("message")),
        Field("inventory", "(B,)", "str",
              "Carried items, a tuple of item descriptions per env without the letter, e.g. "
              "('a +2 pair of leather gloves (being worn)', '3 uncursed apples', 'a key'); () if empty.",
              _object_array("inventory")),
        Field("on_stairs_down", "(B,)", "bool",
              "The hero stands on a down staircase '>' (NLE's internal stairs_down flag; this is "
              "exactly NLE's Staircase goal).", raw("on_stairs_down", np.bool_)),
        Field("stairs_down_visible", "(B,)", "bool",
              "A down staircase '>' is displayed on the current level's map, or the hero stands on one.",
              _visible("stairs_down", also="on_stairs_down")),
        Field("stairs_down_distance", "(B,)", "cells",
              "Chebyshev distance from the hero to the nearest displayed down staircase '>' (0 when "
              "standing on it, 1000 when none is displayed).",
              _nearest("stairs_down", zero_if="on_stairs_down")),
        Field("stairs_up_visible", "(B,)", "bool",
              "An up staircase '<' is displayed on the current level's map (hidden while the hero "
              "stands on it).", _visible("stairs_up")),
        Field("stairs_up_distance", "(B,)", "cells",
              "Chebyshev distance from the hero to the nearest displayed up staircase '<' (1000 when "
              "none is displayed).", _nearest("stairs_up")),
        Field("explored_cells", "(B,)", "cells",
              "Map cells of the current level that are not blank (seen or remembered: floor, walls, "
              "corridors, objects, monsters); NLE's Scout reward is its increase per level.",
              raw("explored_cells", np.int64)),
        Field("explored_cells_total", "(B,)", "cells",
              "Episode total of explored cells: the largest explored_cells seen on each level "
              "visited this episode, summed over levels (never decreases within an episode).",
              raw("explored_cells_total", np.int64)),
        Field("deepest_level", "(B,)", "levels",
              "Deepest level (depth) reached so far in this game (NetHack's deepest_lev_reached).",
              raw("deepest_level", np.int64)),
        Field("monsters_adjacent", "(B,)", "count",
              "Number of non-pet monsters (hostile or peaceful, incl. remembered-invisible 'I') "
              "displayed in the 8 cells around the hero.", _count_adjacent("monster")),
        Field("pet_adjacent", "(B,)", "bool",
              "A pet is displayed in one of the 8 cells around the hero (NLE's StaircasePet test).",
              _any_adjacent("pet")),
        Field("pet_distance", "(B,)", "cells",
              "Chebyshev distance from the hero to the nearest displayed pet (1000 when none is "
              "displayed).", _nearest("pet")),
        Field("oracle_adjacent", "(B,)", "bool",
              "The Oracle is displayed in one of the 8 cells around the hero (NLE's Oracle goal).",
              _any_adjacent("oracle")),
        Field("oracle_distance", "(B,)", "cells",
              "Chebyshev distance from the hero to the Oracle (1000 unless displayed; she lives on "
              "the Oracle level, depth 5-9).", _nearest("oracle")),
        Field("gold_visible", "(B,)", "bool",
              "A pile of gold '$' is displayed on the current level's map.", _visible("gold")),
        Field("gold_distance", "(B,)", "cells",
              "Chebyshev distance from the hero to the nearest displayed gold pile (1000 when none).",
              _nearest("gold")),
        Field("food_distance", "(B,)", "cells",
              "Chebyshev distance from the hero to the nearest displayed food item or corpse on the "
              "map (1000 when none; the hero's own cell is not counted).", _nearest("food")),
        Field("nutrition", "(B,)", "turns",
              "Hero's nutrition counter u.uhunger (about 900 at start, -1 per turn; <150 Hungry, "
              "<50 Weak, >1000 Satiated); rises when the hero eats.", raw("nutrition", np.int64)),
        Field("nutrition_gained", "(B,)", "turns",
              "Episode sum of all increases of nutrition (eating; also a prayer that fixes hunger); "
              "NLE's Eat reward is its per-step increase.", raw("nutrition_gained", np.int64)),
        Field("end_status", "(B,)", "code",
              "NLE episode status after this step: 0 running, 1 death, 2 task successful (the task's "
              "goal as NLE/MiniHack define it), -1 aborted (step limit).",
              raw("end_status", np.int64)),
    ],
)


# ----------------------------------------------------------------------------------
# The task environment
# ----------------------------------------------------------------------------------
class NetHackTaskEnv(TaskEnv):
    """NLE / MiniHack env that reports the NetHack raw row (see the module docstring)."""

    def __init__(self, env, task: TaskSpec, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        nle_env = env.unwrapped
        keys = nle_env._observation_keys
        self._idx = {k: keys.index(k) for k in ("glyphs", "blstats", "message", "internal")}
        self._inv_idx = keys.index("inv_strs") if "inv_strs" in keys else None
        self._blank_glyph = int(glyph_tables()["unexplored"].argmax())
        self._seed_rng: np.random.Generator | None = None
        self._pending: dict[str, Any] | None = None
        self._row: dict[str, Any] | None = None
        self._explored: dict[tuple[int, int], int] = {}
        self._nutrition_gained = 0
        # Read the state NLE judged before it quits the game (quitting blanks the arrays).
        original_quit = nle_env._quit_game

        def quit_game(observation, done):
            self._pending = self._read(observation)
            return original_quit(observation, done)

        nle_env._quit_game = quit_game

    # -- reading -------------------------------------------------------------------
    def _read(self, obs: tuple) -> dict[str, Any]:
        idx = self._idx
        blstats = np.array(obs[idx["blstats"]], dtype=np.int64)
        glyphs = np.array(obs[idx["glyphs"]], dtype=np.int16)
        internal = obs[idx["internal"]]
        msg = obs[idx["message"]].tobytes()
        end = msg.find(b"\0")
        inventory: tuple[str, ...] = ()
        if self._inv_idx is not None:
            strs = obs[self._inv_idx]
            inventory = tuple(r.tobytes().split(b"\0", 1)[0].decode("latin-1")
                              for r in strs[strs[:, 0] != 0])
        return {
            "blstats": blstats,
            "glyphs": glyphs,
            "message": (msg if end < 0 else msg[:end]).decode("latin-1").strip(),
            "inventory": inventory,
            "on_stairs_down": bool(internal[4]),
            "deepest_level": int(internal[0]),
            "nutrition": int(internal[7]),
            "explored_cells": int(np.count_nonzero(glyphs != self._blank_glyph)),
        }

    def _finish(self, row: dict[str, Any], end_status: int) -> None:
        bl = row["blstats"]
        key = (int(bl[BLSTATS["dungeon_number"]]), int(bl[BLSTATS["dlevel"]]))
        self._explored[key] = max(self._explored.get(key, 0), row["explored_cells"])
        row["explored_cells_total"] = int(sum(self._explored.values()))
        row["nutrition_gained"] = self._nutrition_gained
        row["end_status"] = int(end_status)
        self._row = row

    # -- hooks -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._seed_rng is None:
            self._seed_rng = np.random.default_rng(seed)
        core, disp = (int(s) for s in self._seed_rng.integers(1, 2**62, size=2))
        nle_env = self.env.unwrapped
        minigrid_env = getattr(nle_env, "minigrid_env", None)
        if minigrid_env is not None:  # MiniGrid-ported layouts: seed the layout generator
            from nle.env.base import NLE

            minigrid_env.reset(seed=core % 2**31)
            NLE.seed(nle_env, core, disp, False)  # MiniGridHack.seed calls a removed API
        else:
            nle_env.seed(core=core, disp=disp, reseed=False)
        if options is not None:  # NLE's reset indexes options["wizkit_items"] unconditionally
            options = {"wizkit_items": None, **options}
        return super().reset(seed=seed, options=options)

    def on_reset(self, obs: Any, info: dict) -> None:
        self._pending = None
        self._explored = {}
        self._nutrition_gained = 0
        self._finish(self._read(self.env.unwrapped.last_observation),
                     int(info.get("end_status", END_RUNNING)))

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        end_status = int(info.get("end_status", END_RUNNING))
        nle_env = self.env.unwrapped
        if self._pending is not None:  # the game was quit by the task: pre-quit reading
            row, self._pending = self._pending, None
        elif nle_env.nethack.in_normal_game():
            row = self._read(nle_env.last_observation)
        else:  # died: NLE's arrays are blank, repeat the last live reading with hp = 0
            row = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._row.items()}
            row["message"] = ""
            if end_status == END_DEATH:
                row["blstats"][BLSTATS["hp"]] = 0
        self._nutrition_gained += max(0, row["nutrition"] - self._row["nutrition"])
        self._finish(row, end_status)

    def read_raw(self) -> dict[str, Any]:
        """This env's raw row: blstats (27,), glyphs (21, 79), message, inventory, flags."""
        return dict(self._row)


# ----------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------
def _available(*modules: str) -> tuple[bool, str]:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"missing package(s): {', '.join(missing)} (pip install {' '.join(missing)})"
    return True, ""


def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **base_kwargs: Any) -> NetHackTaskEnv:
    """Build the NLE/MiniHack base env of ``task_id`` and wrap it in :class:`NetHackTaskEnv`.

    ``base_kwargs`` go to ``gym.make(base_id, ...)`` (e.g. ``observation_keys``,
    ``max_episode_steps``, ``character``).
    """
    import warnings

    import gymnasium as gym

    spec = _SPECS[task_id]
    if spec.family == "minihack":
        with warnings.catch_warnings():  # minihack imports the deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            import minihack  # noqa: F401  (registers MiniHack-* ids)
        base_kwargs.setdefault("observation_keys", MINIHACK_OBS_KEYS)
    else:
        import nle  # noqa: F401  (registers NetHack* ids)

        base_kwargs.setdefault("observation_keys", NETHACK_OBS_KEYS)
    base_kwargs.setdefault("fix_moon_phase", True)  # no luck changes from the wall clock
    env = gym.make(spec.base_id, render_mode=render_mode, **base_kwargs)
    return NetHackTaskEnv(env, spec, state_in_info=state_in_info)


def success_staircase(state) -> np.ndarray:
    return np.asarray(state.on_stairs_down, dtype=bool)


def success_staircase_pet(state) -> np.ndarray:
    return np.asarray(state.on_stairs_down & state.pet_adjacent, dtype=bool)


def success_oracle(state) -> np.ndarray:
    return np.asarray(state.oracle_adjacent, dtype=bool)


SCORE_GOAL, GOLD_GOAL, SCOUT_GOAL = 200, 50, 500


def success_score(state) -> np.ndarray:
    return np.asarray(state.score >= SCORE_GOAL, dtype=bool)


def success_gold(state) -> np.ndarray:
    return np.asarray(state.gold >= GOLD_GOAL, dtype=bool)


def success_eat(state) -> np.ndarray:
    return np.asarray(state.nutrition_gained > 0, dtype=bool)


def success_scout(state) -> np.ndarray:
    return np.asarray(state.explored_cells_total >= SCOUT_GOAL, dtype=bool)


def success_minihack(state) -> np.ndarray:
    return np.asarray(state.end_status == END_TASK_SUCCESSFUL, dtype=bool)


_NLE_NOTE = ("The hero is NLE's default character, a neutral male human Monk "
             "(mon-hum-neu-mal), with NLE's 23 task actions (move in 8 directions, far-move in 8, "
             "up/down/wait, kick, eat, search, confirm).")
_NETHACK = [
    # (task, base, instruction, success_doc, success, tags)
    ("Score", "NetHackScore-v0",
     "Play NetHack and achieve as high an in-game score as possible: explore, descend, kill "
     "monsters, collect gold, and stay alive. " + _NLE_NOTE,
     f"rewardgym's definition (NLE's Score task has no success): the bottom-line score reaches "
     f"at least {SCORE_GOAL} points (e.g. reaching depth 4 is worth 150).", success_score, ()),
    ("Staircase", "NetHackStaircase-v0",
     "Find the down staircase '>' on the first dungeon level and stand on it. " + _NLE_NOTE,
     "NLE's definition: the hero stands on a down staircase (NLE's internal stairs_down flag, "
     "state.on_stairs_down); NLE then ends the episode with end_status 2.", success_staircase, ()),
    ("StaircasePet", "NetHackStaircasePet-v0",
     "Reach the down staircase '>' on the first dungeon level together with your pet kitten: "
     "stand on '>' while the pet is next to you. " + _NLE_NOTE,
     "NLE's definition: the hero stands on a down staircase while a pet is displayed in one of "
     "the 8 adjacent cells (state.on_stairs_down & state.pet_adjacent).", success_staircase_pet, ()),
    ("Oracle", "NetHackOracle-v0",
     "Descend through the dungeon, find the Oracle (on the Oracle level, depth 5 to 9) and stand "
     "next to her. " + _NLE_NOTE,
     "NLE's definition: the Oracle is displayed in one of the 8 cells adjacent to the hero "
     "(state.oracle_adjacent).", success_oracle, ("hard",)),
    ("Gold", "NetHackGold-v0",
     "Collect as much gold as possible (gold '$' is picked up automatically by walking over it); "
     "explore and descend to find more. " + _NLE_NOTE,
     f"rewardgym's definition (NLE's Gold task has no success): the hero carries at least "
     f"{GOLD_GOAL} gold pieces.", success_gold, ()),
    ("Eat", "NetHackEat-v0",
     "Keep the hero fed: eat food or fresh corpses to raise the nutrition level, and avoid going "
     "hungry. " + _NLE_NOTE,
     "rewardgym's definition (NLE's Eat task has no success): the hero's nutrition has risen at "
     "least once this episode, i.e. the hero ate something (state.nutrition_gained > 0).",
     success_eat, ()),
    ("Scout", "NetHackScout-v0",
     "Explore as much of the dungeon as possible: reveal new map cells on every level and descend "
     "to see new levels. " + _NLE_NOTE,
     f"rewardgym's definition (NLE's Scout task has no success): at least {SCOUT_GOAL} map cells "
     f"explored this episode, summed over levels (state.explored_cells_total >= {SCOUT_GOAL}; "
     f"a random agent reveals about 50 to 450 in a whole episode).", success_scout, ()),
]
_MH_NOTE = " Actions: move in the 8 compass directions"
_MINIHACK = [
    ("Room-5x5", "MiniHack-Room-5x5-v0",
     "Walk to the down staircase '>' in a lit 5x5 room." + _MH_NOTE + ".",
     "MiniHack's definition: the hero reaches the staircase down '>', which ends the episode "
     "with end_status 2 (TASK_SUCCESSFUL)."),
    ("KeyRoom-S5", "MiniHack-KeyRoom-S5-v0",
     "Pick up the key '(' in the room, walk to the locked door of the small inner room, unlock "
     "it by applying the key towards the door, and reach the staircase down '>' behind it."
     + _MH_NOTE + ", pick up ',' and apply.",
     "MiniHack's definition: the hero reaches the staircase down '>', which ends the episode "
     "with end_status 2 (TASK_SUCCESSFUL)."),
    ("River", "MiniHack-River-v0",
     "Cross the river '}' to reach the staircase down '>' on the other side: push boulders '`' "
     "into the water to build a bridge; you drown if you step into deep water." + _MH_NOTE
     + " (moving into a boulder pushes it).",
     "MiniHack's definition: the hero reaches the staircase down '>', which ends the episode "
     "with end_status 2 (TASK_SUCCESSFUL)."),
    ("CorridorBattle", "MiniHack-CorridorBattle-v0",
     "Fight your way through a horde of rats to the staircase down '>': lure them into the "
     "corridor and fight them one at a time so you are not surrounded, then reach '>'."
     + _MH_NOTE + " (moving into a monster attacks it).",
     "MiniHack's definition: the hero reaches the staircase down '>', which ends the episode "
     "with end_status 2 (TASK_SUCCESSFUL)."),
    ("MultiRoom-N2", "MiniHack-MultiRoom-N2-v0",
     "Go through the door into the second room and reach the staircase down '>' there (a "
     "MiniGrid MultiRoom layout ported to NetHack)." + _MH_NOTE + " (walking into a closed door "
     "opens it).",
     "MiniHack's definition: the hero reaches the staircase down '>', which ends the episode "
     "with end_status 2 (TASK_SUCCESSFUL)."),
]
_MINIHACK_STEPS = {"Room-5x5": 100, "KeyRoom-S5": 200, "River": 350, "CorridorBattle": 350,
                   "MultiRoom-N2": 40}

TASKS: list[TaskSpec] = [
    TaskSpec(
        id=f"rewardgym/NetHack-{name}-v0", family="nethack", base_id=base, instruction=instr,
        success_doc=sdoc, success=succ, view=VIEW,
        make_env=functools.partial(make_env, f"rewardgym/NetHack-{name}-v0"),
        max_episode_steps=5000, expert=f"NetHack-{name}.py",
        available=functools.partial(_available, "nle"), tags=("nle", "discrete", *tags),
    )
    for name, base, instr, sdoc, succ, tags in _NETHACK
] + [
    TaskSpec(
        id=f"rewardgym/MiniHack-{name}-v0", family="minihack", base_id=base, instruction=instr,
        success_doc=sdoc, success=success_minihack, view=VIEW,
        make_env=functools.partial(make_env, f"rewardgym/MiniHack-{name}-v0"),
        max_episode_steps=_MINIHACK_STEPS[name], expert=f"MiniHack-{name}.py",
        available=functools.partial(
            _available, *(("nle", "minihack", "minigrid") if name.startswith("MultiRoom")
                          else ("nle", "minihack"))),
        tags=("minihack", "discrete", "navigation"),
    )
    for name, base, instr, sdoc in _MINIHACK
]
_SPECS: dict[str, TaskSpec] = {spec.id: spec for spec in TASKS}
