"""Does reward analysis predict what training reaches? And what does it cost?

Three parts (each resumable: results are JSON lines under ``--out``):

``predict``  For each task below, the library expert and mutants of it (scaled and shaped,
             sign-flipped, a term dropped, weights perturbed) and deliberately hackable
             programs (paying for action size, gripper height, wasted steps ...) are
             analysed with ``rewardgym.analysis.analyze`` (random coverage, the defaults),
             then trained with PPO at a fixed budget for ``--seeds`` seeds and evaluated on
             the task's success test (20 deterministic episodes). The table gives, per
             statistic, the Spearman rank correlation between the statistic and the success
             PPO reached, over all programs and per task.
``interval`` Width of the 95 % bootstrap interval of EPIC on Fetch-Reach at the default
             number of transitions, for programs at several distances from the expert.
``prescreen`` A synthesis run on Fetch-Reach against the scripted OpenAI-compatible test
             server (TEST TOOLING: it answers with fixed programs, so both runs see the same
             candidates): 2 rounds x 4 candidates (the expert and mutants above), trained
             for the predict budget, with and without ``--prescreen 1``; the table gives the
             best success each reached and the training compute (env steps, wall time).
``speed``    Wall time of ``analyze`` on 5 programs of a MuJoCo task (Hopper-Hop) at the
             defaults, beside the time PPO takes for the task's budget of 1M steps
             (measured steps/s over 8,192 steps, side by side in the same run).

    python benchmarks/analysis.py --part speed
    python benchmarks/analysis.py --part prescreen
    python benchmarks/analysis.py --part interval [--transitions 16384]
    python benchmarks/analysis.py --part predict --seeds 2      # ~1-2 h on 2 cores
    # or both seeds side by side:
    python benchmarks/analysis.py --part predict --train-seeds 0 & \
        python benchmarks/analysis.py --part predict --train-seeds 1 --skip-analysis
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np

from rewardgym.analysis import analyze

STATISTICS = ("epic", "starc", "epic_to_sparse", "starc_to_sparse", "alignment", "top_reward_failure")

# task -> (PPO budget in env steps, PPO hyper-parameters, the agent's gamma, {name: program text})
FETCH = """
def compute_reward(state, action):
    reach = 1.0 - np.tanh(state.grip_to_goal / 0.1)
    bonus = np.where(state.success, 1.0, 0.0)
    return {expr}
"""
METAWORLD = """
def compute_reward(state, action):
    margin = distance(state.hand_init_pos, state.goal_pos)
    in_place = 10.0 * tolerance(state.hand_to_goal, -np.inf, 0.05, margin, "long_tail")
    bonus = np.where(state.success, 10.0, 0.0)
    return {expr}
"""
MINIHACK = """
def compute_reward(state, action):
    goal = 1.0 * (state.end_status == 2)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.1 * np.where(known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    step = -0.01 * np.ones_like(approach)
    return {expr}
"""

CASES = {
    "rewardgym/Fetch-Reach-v0": (12_000, {"num_steps": 128, "gamma": 0.98}, 0.98, FETCH, {
        "expert": "reach + bonus",
        "scaled_shaped": "3.0 * (reach + bonus) + 1.0 + 0.98 * (1.0 - np.tanh(state.grip_to_goal / 0.1)) "
                         "- (1.0 - np.tanh(state.prev.grip_to_goal / 0.1))",
        "sign_flipped": "-(reach + bonus)",
        "dense_only": "reach",
        "bonus_only": "bonus",
        "weights_perturbed": "0.2 * reach + 3.0 * bonus",
        "hack_action_size": "0.05 * reach + np.sum(np.square(action[:, :3]), axis=-1)",
        "hack_gripper_height": "state.grip_pos[:, 2] + 0.05 * bonus",
    }),
    "rewardgym/MetaWorld-Reach-v0": (20_000, {"num_steps": 256}, 0.99, METAWORLD, {
        "expert": "in_place",
        "scaled_shaped": "0.5 * in_place - 2.0 + 0.99 * np.tanh(state.hand_to_goal) - np.tanh(state.prev.hand_to_goal)",
        "sign_flipped": "-in_place",
        "bonus_only": "bonus",
        "linear_distance": "-state.hand_to_goal",
        "weights_perturbed": "0.1 * in_place + bonus",
        "hack_action_size": "np.sum(np.square(action[:, :3]), axis=-1) + 0.01 * in_place",
        "hack_hand_height": "10.0 * state.hand_pos[:, 2]",
    }),
    "rewardgym/MiniHack-Room-5x5-v0": (20_000, {"num_steps": 128, "num_minibatches": 4, "update_epochs": 4,
                                                "ent_coef": 0.01}, 0.99, MINIHACK, {
        "expert": "goal + approach + step",
        "scaled_shaped": "2.0 * (goal + approach + step) + 0.99 * (-0.1 * np.minimum(state.stairs_down_distance, 20)) "
                         "- (-0.1 * np.minimum(state.prev.stairs_down_distance, 20))",
        "sign_flipped": "-(goal + approach + step)",
        "goal_only": "goal",
        "approach_only": "approach",
        "weights_perturbed": "0.2 * goal + 3.0 * approach + step",
        "hack_search": "0.05 * (action == 21) + 0.1 * goal",
        "hack_linger": "0.02 * np.ones_like(goal) + 0.1 * approach",
    }),
}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def _programs(out: Path, task: str) -> dict[str, Path]:
    _, _, _, template, exprs = CASES[task]
    folder = out / "programs" / task.split("/")[1]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, expr in exprs.items():
        path = folder / f"{name}.py"
        path.write_text(f'"""{name} ({task}): a benchmark program for benchmarks/analysis.py."""\n'
                        + template.format(expr=expr))
        paths[name] = path
    return paths


def predict(args: argparse.Namespace) -> None:
    from scipy.stats import spearmanr

    from rewardgym.runs.evaluate import evaluate
    from rewardgym.runs.train import TrainSpec, train

    out = Path(args.out)
    log = out / "predict.jsonl"
    done = {(r["task"], r["program"], r.get("seed")) for r in _jsonl(log)}
    for task in args.tasks or CASES:
        steps, hyper, gamma, _, _ = CASES[task]
        paths = _programs(out, task)
        if (task, "*analysis*", None) not in done and not args.skip_analysis:
            start = time.perf_counter()
            report = analyze(task, [str(p) for p in paths.values()], gamma=gamma, seed=0)
            for p in report.programs:
                _append(log, {"task": task, "program": p.name, "seed": None, "kind": "analysis",
                              **{k: getattr(p, k) for k in STATISTICS}, "flags": p.flags})
            _append(log, {"task": task, "program": "*analysis*", "seed": None, "kind": "time",
                          "seconds": time.perf_counter() - start, "successes": report.successes})
        for name, path in paths.items():
            for seed in (args.train_seeds if args.train_seeds is not None else range(args.seeds)):
                if (task, name, seed) in done:
                    continue
                run_name = f"{task.split('/')[1]}-{name}-s{seed}"
                start = time.perf_counter()
                spec = TrainSpec(task=task, reward=str(path), steps=int(steps * args.scale), num_envs=8, seed=seed,
                                 device="cpu", hyperparams=dict(hyper, num_threads=1), checkpoint_every_s=600)
                run = train(spec, runs_root=out / "runs", run_name=run_name)
                report = evaluate(run.path, episodes=20, seed=70_000 + seed)
                _append(log, {"task": task, "program": name, "seed": seed, "kind": "training",
                              "steps": spec.steps, "success_rate": report["success_rate"],
                              "env_return": report["env_return"]["mean"],
                              "minutes": (time.perf_counter() - start) / 60})
    _predict_table(log)


def _predict_table(log: Path) -> None:
    from scipy.stats import spearmanr

    rows = _jsonl(log)
    stats = {(r["task"], r["program"]): r for r in rows if r.get("kind") == "analysis"}
    success: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r.get("kind") == "training":
            success.setdefault((r["task"], r["program"]), []).append(r["success_rate"])
    keys = [k for k in stats if k in success]
    if not keys:
        print("no trained programs yet")
        return
    print(f"\n{'task':<30} {'program':<20} {'success':>12} " + " ".join(f"{s[:12]:>12}" for s in STATISTICS))
    for key in keys:
        s = np.asarray(success[key])
        print(f"{key[0].split('/')[1]:<30} {key[1]:<20} {s.mean():>6.2f}±{s.std():<5.2f} "
              + " ".join(f"{'n/a' if stats[key][st] is None else format(stats[key][st], '.3f'):>12}"
                         for st in STATISTICS))
    seeds = sorted({len(v) for v in success.values()})
    print(f"\nSpearman rank correlation between each statistic and the success PPO reached "
          f"({len(keys)} programs, {seeds} seeds each; distances should correlate negatively, "
          f"alignment positively, top-reward failure negatively):")
    groups = [("all tasks", keys)] + [(t.split("/")[1], [k for k in keys if k[0] == t])
                                      for t in dict.fromkeys(k[0] for k in keys)]
    print(f"{'statistic':<20} " + " ".join(f"{g[:22]:>22}" for g, _ in groups))
    for st in STATISTICS:
        cells = []
        for _, group in groups:
            pairs = [(stats[k][st], np.mean(success[k])) for k in group if stats[k][st] is not None]
            if len(pairs) < 4 or len({p[1] for p in pairs}) < 2:
                cells.append("n/a")
                continue
            rho, pval = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
            cells.append(f"{rho:+.2f} (p={pval:.2f}, n={len(pairs)})")
        print(f"{st:<20} " + " ".join(f"{c:>22}" for c in cells))


def interval(args: argparse.Namespace) -> None:
    out = Path(args.out)
    paths = _programs(out, "rewardgym/Fetch-Reach-v0")
    names = ["weights_perturbed", "dense_only", "bonus_only", "hack_gripper_height", "hack_action_size"]
    report = analyze("rewardgym/Fetch-Reach-v0", [str(paths[n]) for n in names], gamma=0.98, seed=args.seed,
                     transitions=args.transitions)
    print(f"\nFetch-Reach, {report.transitions} random transitions ({report.successes} successful), mean set "
          f"{report.mean_set} (states, actions), 200 bootstrap resamples:")
    print(f"{'program':<22} {'EPIC':>7} {'95% interval':>18} {'width':>7} {'STARC':>7} {'95% interval':>18} {'width':>7}")
    for p in report.programs:
        (el, eh), (sl, sh) = p.epic_interval, p.starc_interval
        print(f"{p.name:<22} {p.epic:>7.3f} {f'[{el:.3f}, {eh:.3f}]':>18} {eh - el:>7.3f} {p.starc:>7.3f} "
              f"{f'[{sl:.3f}, {sh:.3f}]':>18} {sh - sl:>7.3f}")


def prescreen(args: argparse.Namespace) -> None:
    import subprocess
    import sys

    from rewardgym.testing.openai_server import ScriptedOpenAIServer

    task = "rewardgym/Fetch-Reach-v0"
    steps, _, _, template, exprs = CASES[task]
    rounds = [["hack_action_size", "sign_flipped", "expert", "hack_gripper_height"],
              ["dense_only", "hack_action_size", "weights_perturbed", "sign_flipped"]]
    replies = ["Here are four reward programs.\n\n" + "\n\n".join(
        f"```python\n{template.format(expr=exprs[name]).strip()}\n```" for name in names) for names in rounds]
    out = Path(args.out) / "prescreen"
    rows = []
    for label, extra in (("train all", []), ("--prescreen 1", ["--prescreen", "1"])):
        name = "all" if not extra else "prescreen1"
        run = out / name
        if not (run / "state.json").is_file() or not json.loads((run / "state.json").read_text()).get("done"):
            with ScriptedOpenAIServer([{"kind": "reply", "text": replies[0]}, {"kind": "reply", "text": replies[1]},
                                       {"kind": "reply", "text": replies[1], "repeat": True}]) as server:
                cmd = [sys.executable, "-m", "rewardgym.cli.main", "synthesize", task, "--rounds", "2",
                       "--samples", "4", "--steps", str(int(steps * args.scale)), "--num-envs", "8",
                       "--eval-episodes", "20", "--mode", "whole", "--base-url", server.base_url, "--model",
                       server.model, "--api-key", server.api_key, "--runs-dir", str(out), "--name", name, *extra]
                if (run / "state.json").is_file():
                    cmd = [sys.executable, "-m", "rewardgym.cli.main", "synthesize", "--resume", str(run),
                           "--base-url", server.base_url, "--model", server.model, "--api-key", server.api_key]
                subprocess.run(cmd, check=True, env={**os.environ, "REWARDGYM_LLM_CACHE": str(out / "cache")})
        state = json.loads((run / "state.json").read_text())
        cands = [c for r in state["rounds"] for c in r["candidates"]]
        trained = [c for c in cands if c["status"] == "trained"]
        rows.append((label, len(cands), len(trained), len(trained) * int(steps * args.scale),
                     state["timings"].get("training", 0.0), state["timings"].get("analysis", 0.0),
                     max(c["eval"]["success_rate"] for c in trained)))
    print(f"\nSynthesis on Fetch-Reach, scripted server, 2 rounds x 4 candidates, {int(steps * args.scale)} steps each:")
    print(f"{'run':<16} {'candidates':>10} {'trained':>8} {'env steps':>10} {'training s':>11} {'analysis s':>11} "
          f"{'best success':>13}")
    for r in rows:
        print(f"{r[0]:<16} {r[1]:>10} {r[2]:>8} {r[3]:>10} {r[4]:>11.0f} {r[5]:>11.1f} {r[6]:>13.2f}")


def speed(args: argparse.Namespace) -> None:
    from rewardgym.runs.train import TrainSpec, train

    out = Path(args.out)
    folder = out / "programs" / "Hopper-Hop"
    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        "scaled": "def compute_reward(state, action):\n    return 2.0 * state.torso_lin_vel[:, 0] + 1.0\n",
        "height": "def compute_reward(state, action):\n    return state.torso_height - 1.2\n",
        "energy": "def compute_reward(state, action):\n    return -np.sum(np.square(action), axis=-1)\n",
        "upright": "def compute_reward(state, action):\n    return np.cos(state.torso_euler[:, 1])\n",
    }
    paths = ["expert"]
    for name, text in texts.items():
        (folder / f"{name}.py").write_text(text)
        paths.append(str(folder / f"{name}.py"))
    start = time.perf_counter()
    report = analyze("rewardgym/Hopper-Hop-v0", paths, seed=args.seed, transitions=args.transitions)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    train(TrainSpec(task="rewardgym/Hopper-Hop-v0", reward="expert", steps=8192, num_envs=8, seed=0, device="cpu",
                    hyperparams={"num_steps": 256}), runs_root=out / "runs", run_name=f"speed-{int(time.time())}")
    per_step = (time.perf_counter() - start) / 8192
    print(f"\nanalyze Hopper-Hop, 5 programs, {report.transitions} transitions, mean set {report.mean_set}: "
          f"{seconds:.1f} s (coverage included)")
    print(f"PPO on Hopper-Hop, same machine, same run: {1 / per_step:.0f} steps/s -> 1M steps ~ "
          f"{per_step * 1e6 / 60:.0f} min; the analysis costs {seconds / (per_step * 1e6) * 100:.2f} % of one run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["predict", "interval", "speed", "prescreen", "table"], default="predict")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--transitions", type=int, default=16384, help="coverage size of --part interval and --part speed")
    parser.add_argument("--train-seeds", nargs="+", type=int, default=None,
                        help="train only these seeds (run two processes side by side on a 2-core machine)")
    parser.add_argument("--skip-analysis", action="store_true", help="train only (another process analyses)")
    parser.add_argument("--out", default="runs/analysis_benchmark")
    args = parser.parse_args()
    if args.part == "predict":
        predict(args)
    elif args.part == "table":
        _predict_table(Path(args.out) / "predict.jsonl")
    else:
        {"interval": interval, "speed": speed, "prescreen": prescreen}[args.part](args)


if __name__ == "__main__":
    main()
