"""TEST TOOLING for rewardgym: never used by the library at run time.

:mod:`rewardgym.testing.openai_server` is a local OpenAI-compatible HTTP server that answers
from scripted transcripts (``rewardgym/testing/transcripts/*.json``), so the LLM client,
the reward-synthesis loop and the CLI can be tested over real HTTP without a model.
"""

from rewardgym.testing.openai_server import (ScriptedOpenAIServer, ScriptedResponse, load_transcript,
                                             transcript_names)

__all__ = ["ScriptedOpenAIServer", "ScriptedResponse", "load_transcript", "transcript_names"]
