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

_MODULES = {  # module -> the names this package exports from it (imported on first use)
    "rewardgym.llm.client": ("LLMClient", "Budget", "Completion", "LLMError", "LLMConfigError", "LLMAuthError",
                             "LLMModelError", "LLMRequestError", "LLMUnavailableError", "BudgetExceeded"),
    "rewardgym.llm_rewards.extract": ("extract_programs", "ExtractedProgram", "NoCodeFound"),
    "rewardgym.llm_rewards.critic": ("critique", "CriticResult"),
    "rewardgym.llm_rewards.prompts": ("designer_messages", "repair_messages", "reflection_messages",
                                      "followup_messages", "task_documentation"),
    "rewardgym.llm_rewards.library": ("LibraryEntry", "list_programs", "get_program", "add_program", "retrieve",
                                      "LibraryError"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)  # lazy: openai and the simulators load when used
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
