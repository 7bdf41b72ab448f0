"""Rounds until the first valid candidate with a small local model: whole programs vs edits.

Runs the real ``rewardgym synthesize`` command (a subprocess per run, real HTTP) against an
OpenAI-compatible server, by default the one ``bash scripts/llm_server.sh`` starts
(llama.cpp serving SmolLM2-135M-Instruct), once per mode and seed, each with an empty LLM
cache, and prints per run: the first round with a candidate that passed the critic (the
sandbox and random rollouts), candidates valid / made, requests, and LLM seconds (from the
run's transcript). Training is kept tiny (it is not what is measured).

    bash scripts/llm_server.sh &                      # once: build (~12 min) and serve
    python benchmarks/synthesis_small_model.py        # ~1 h on 2 cores
    python benchmarks/synthesis_small_model.py --seeds 1 --rounds 2 --task Hopper-Hop
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VALID = ("valid", "trained", "failed")


def run_once(args: argparse.Namespace, mode: str, seed: int, root: Path) -> dict:
    name = f"{mode}-s{seed}"
    env = {**os.environ, "REWARDGYM_LLM_CACHE": str(root / f"cache-{name}"),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa"),
           "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "osmesa")}
    cmd = [sys.executable, "-m", "rewardgym.cli.main", "synthesize", args.task, "--mode", mode,
           "--seed", str(seed), "--rounds", str(args.rounds), "--samples", str(args.samples),
           "--max-repairs", str(args.max_repairs), "--steps", str(args.steps), "--num-envs", "1",
           "--eval-episodes", "1", "--check-timeout", "60",
           *(["--llm-timeout", str(args.llm_timeout)] if args.llm_timeout else []),
           *(["--context-size", str(args.context_size)] if args.context_size else []),
           "--max-reply-tokens", str(args.max_reply_tokens), "--temperature", str(args.temperature),
           "--base-url", args.base_url, "--model", args.model, "--runs-dir", str(root), "--name", name]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    run = root / name
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {"rounds": []}
    first = next((r["round"] + 1 for r in state["rounds"] if any(c["status"] in VALID for c in r["candidates"])),
                 None)
    cands = [c for r in state["rounds"] for c in r["candidates"]]
    records = [json.loads(line) for line in (run / "llm_transcript.jsonl").read_text().splitlines()] \
        if (run / "llm_transcript.jsonl").is_file() else []
    sent = [r for r in records if not r.get("cached") and r.get("attempts")]
    return {"mode": mode, "seed": seed, "rc": proc.returncode, "first_valid_round": first,
            "valid": sum(c["status"] in VALID for c in cands), "candidates": len(cands),
            "rounds": len(state["rounds"]), "requests": len(sent),
            "llm_s": sum(r.get("latency_s") or 0.0 for r in sent),
            "cut": sum(r.get("finish_reason") == "length" for r in sent), "wall_s": wall,
            "stop": (state.get("stop") or {}).get("reason", ""), "run": str(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8088/v1"))
    parser.add_argument("--model", default=os.environ.get("REWARDGYM_LLM_MODEL", "smollm2-135m"))
    parser.add_argument("--task", default="MetaWorld-Reach")
    parser.add_argument("--modes", default="whole,edit")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--max-repairs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--max-reply-tokens", type=int, default=768)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--llm-timeout", type=float, default=None,
                        help="Seconds per LLM attempt (default: learnt from the server's speed).")
    parser.add_argument("--context-size", type=int, default=None,
                        help="The server's context window (default: what the server says).")
    parser.add_argument("--keep", default=None, help="Keep the run directories here (default: a temp dir).")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    root = Path(args.keep or tempfile.mkdtemp(prefix="rewardgym-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in args.modes.split(","):
        for seed in range(args.seeds):
            row = run_once(args, mode, seed, root)
            rows.append(row)
            print(f"  {mode} seed {seed}: first valid round {row['first_valid_round']}, {row['valid']}/"
                  f"{row['candidates']} valid, {row['requests']} requests, exit {row['rc']}", file=sys.stderr,
                  flush=True)
    print(f"{args.model} at {args.base_url}, {args.task}, {args.samples} sample(s) x {args.rounds} round(s), "
          f"{args.max_repairs} repair(s) per candidate, temperature {args.temperature}")
    print(f"{'mode':<6} {'seed':>4} {'first valid round':>18} {'valid/cands':>12} {'requests':>9} {'cut':>4} "
          f"{'LLM s':>7} {'wall s':>7} {'exit':>4}")
    for r in rows:
        first = str(r["first_valid_round"]) if r["first_valid_round"] else f"none in {r['rounds']}"
        print(f"{r['mode']:<6} {r['seed']:>4} {first:>18} {r['valid']:>5}/{r['candidates']:<6} {r['requests']:>9} "
              f"{r['cut']:>4} {r['llm_s']:>7.0f} {r['wall_s']:>7.0f} {r['rc']:>4}")
        if r["stop"]:
            print(f"       stopped: {r['stop'][:200]}")
    for mode in args.modes.split(","):
        mine = [r for r in rows if r["mode"] == mode]
        found = [r["first_valid_round"] for r in mine if r["first_valid_round"]]
        mean = f"{sum(found) / len(found):.1f}" if found else "-"
        print(f"{mode}: a valid candidate in {len(found)} of {len(mine)} runs; mean first valid round {mean}")
    print(f"runs: {root}")


if __name__ == "__main__":
    main()
