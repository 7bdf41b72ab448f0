"""Where the wall time of a synthesis run goes, and the speed-up of W training workers.

Runs the same small synthesis (1 round, 2 valid candidates, PPO for ``--steps`` each on
Hopper-Hop) with 1 worker and with W workers, side by side in one process, against the
local OpenAI-compatible TEST TOOLING server (scripted replies: the LLM share is then
only HTTP + extraction), or against a real endpoint with ``--base-url`` (then the
candidates are whatever the model writes). Prints the share of wall time spent in LLM
calls, validation (critic), training (+ evaluation) and the rest (analysis, reports),
and the speed-up.

    python benchmarks/synthesis_overhead.py [--steps 100000] [--workers 2]
    python benchmarks/synthesis_overhead.py --base-url http://localhost:8000/v1 --model M

Target (issue: synthesis): >= 1.8x with 2 workers on a 2-core machine, since training dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

from rewardgym.llm.client import LLMClient
from rewardgym.llm_rewards.synthesize import SynthesisSpec, Synthesizer, new_run_dir
from rewardgym.testing.openai_server import ScriptedOpenAIServer, load_transcript_file


def _scripted_reply() -> str:
    good = load_transcript_file("good_programs")["responses"][-1]["text"]
    return good


def run_once(workers: int, steps: int, root: Path, base_url: str | None, model: str | None,
             api_key: str | None) -> dict:
    spec = SynthesisSpec(task="rewardgym/Hopper-Hop-v0", rounds=1, samples=2, steps=steps, num_envs=4,
                         workers=workers, eval_episodes=3, max_candidates=2)
    server = None
    if base_url is None:
        server = ScriptedOpenAIServer([{"kind": "reply", "text": _scripted_reply(), "repeat": True}]).start()
        base_url, model, api_key = server.base_url, server.model, server.api_key
    try:
        run = new_run_dir(spec, root, name=f"w{workers}")
        client = LLMClient(model=model, base_url=base_url, api_key=api_key, run_dir=run, cache_dir=False)
        start = time.perf_counter()
        Synthesizer(spec, run, client, log=lambda m: None).run_loop()
        wall = time.perf_counter() - start
    finally:
        if server is not None:
            server.stop()
    state = json.loads((run / "state.json").read_text())
    t = state["timings"]
    trained = sum(c["status"] == "trained" for r in state["rounds"] for c in r["candidates"])
    return {"workers": workers, "wall_s": wall, "llm_s": t.get("llm", 0.0), "validation_s": t.get("validation", 0.0),
            "training_s": t.get("training", 0.0), "trained": trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="training env steps per candidate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--base-url", default=None, help="a real OpenAI-compatible endpoint (default: test server)")
    parser.add_argument("--model", default=os.environ.get("REWARDGYM_LLM_MODEL"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_once(w, args.steps, Path(tmp), args.base_url, args.model, args.api_key)
                for w in (1, args.workers)]
    print(f"{'workers':>7} {'wall s':>8} {'LLM':>6} {'valid.':>6} {'train':>6} {'other':>6} {'trained':>7}")
    for r in rows:
        other = r["wall_s"] - r["llm_s"] - r["validation_s"] - r["training_s"]
        share = [100 * x / r["wall_s"] for x in (r["llm_s"], r["validation_s"], r["training_s"], other)]
        print(f"{r['workers']:>7} {r['wall_s']:>8.1f} " + " ".join(f"{s:>5.1f}%" for s in share) + f" {r['trained']:>7}")
    print(f"speed-up of {args.workers} workers over 1: {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x "
          f"(training phase: {rows[0]['training_s'] / rows[1]['training_s']:.2f}x)")


if __name__ == "__main__":
    main()
