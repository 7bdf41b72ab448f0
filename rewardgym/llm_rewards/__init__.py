"""rewardgym.llm_rewards: LLM reward synthesis (Text2Reward, Eureka, Auto MC-Reward).

Building blocks:

* :mod:`~rewardgym.llm.client`: :class:`LLMClient` (OpenAI-compatible endpoint,
  cache, JSONL transcript, retries, budget).
* :mod:`~rewardgym.llm_rewards.extract`: :func:`extract_programs` from a reply.
* :mod:`~rewardgym.llm_rewards.prompts`: design / repair / reflection prompts.
* :mod:`~rewardgym.llm_rewards.critic`: :func:`critique` (sandbox + random rollouts in a
  reward worker, with a wall-clock budget).
* :mod:`~rewardgym.llm_rewards.library`: the reward-program library and few-shot retrieval.

Names are imported lazily (``openai`` and the simulators load only when used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LLMClient": "client", "Budget": "client", "Completion": "client", "LLMError": "client",
    "LLMConfigError": "client", "LLMAuthError": "client", "LLMModelError": "client",
    "LLMRequestError": "client", "LLMUnavailableError": "client", "BudgetExceeded": "client",
    "extract_programs": "extract", "ExtractedProgram": "extract", "NoCodeFound": "extract",
    "critique": "critic", "CriticResult": "critic",
    "designer_messages": "prompts", "repair_messages": "prompts", "reflection_messages": "prompts",
    "followup_messages": "prompts", "task_documentation": "prompts",
    "LibraryEntry": "library", "list_programs": "library", "get_program": "library",
    "add_program": "library", "retrieve": "library", "LibraryError": "library",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # lazy (start-up time: openai and the simulators load only when used); the client lives in rewardgym.llm
    path = "rewardgym.llm.client" if module == "client" else f"{__name__}.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
