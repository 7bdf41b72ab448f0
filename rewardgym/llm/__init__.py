"""rewardgym.llm: the client of OpenAI-compatible chat endpoints (OpenAI, vLLM, Ollama,
llama.cpp's server) that every LLM user in rewardgym shares: synthesis, ONI's annotator,
robustness ranges. Cache keyed by endpoint and request, JSONL transcripts, retries, budgets
(:mod:`rewardgym.llm.client`). It knows nothing of rewards or tasks, so the reward kinds
that ask an LLM (ONI) sit above it and synthesis above them.
"""
