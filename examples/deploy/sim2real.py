"""From a trained run to a (simulated) robot: export, verify, evaluate, sweep, deploy.

    python examples/deploy/sim2real.py runs/RUN [--robot sim:examples/deploy/robot_heldout.toml] [--duration 8]

1. exports the run to ONNX with the normaliser and the action bounds inside, parity-checked
   against the run's torch policy on 1,000 recorded observations (``rewardgym export``);
2. re-verifies the exported file in this machine's ONNX Runtime (do this on the robot's computer);
3. evaluates it in the training simulator (``rewardgym eval policy.onnx``);
4. sweeps friction, mass and latency one at a time (``rewardgym robustness``);
5. deploys it to the robot through the safety layer (``rewardgym deploy``): here a SimRobot with
   the held-out perturbation of ``robot_heldout.toml``, in its own process, in real time, over TCP.

Train a run for it first, for example (about 15 min on 2 CPU cores)::

    rewardgym train Hopper-Hop --reward env --steps 1000000 --randomize examples/deploy/randomize.toml

For a real robot, write a driver from ``examples/robot_driver_template.py`` and pass it to
``run_deployment`` instead of the SimRobot, with ``examples/deploy/safety.toml``'s limits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardgym.runs.export import ExportedPolicy, evaluate_exported, export_run
from rewardgym.deploy import SafetyConfig, run_deployment
from rewardgym.deploy import robustness as rb
from rewardgym.deploy.robot import robot_from_spec

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a rewardgym PPO run directory (locomotion task)")
    parser.add_argument("--robot", default=f"sim:{HERE / 'robot_heldout.toml'}")
    parser.add_argument("--safety", type=Path, default=None, help="safety limits (.toml; default: the defaults)")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("deployments/sim2real"))
    args = parser.parse_args()

    export = export_run(args.run, "onnx")
    policy = ExportedPolicy.load(export)
    print(f"1. exported {policy}; parity {policy.manifest['parity']['max_abs_diff']:.1e}")
    print(f"2. this machine's runtime: max |diff| {policy.verify():.1e} on the recorded observations")
    report = evaluate_exported(export, episodes=8)
    print(f"3. training simulator: return {report['env_return']['mean']:.1f} ± {report['env_return']['std']:.1f}, "
          f"success {report['success_rate']:.2f}")
    grid = {"friction": [0.5, 0.75, 1.0, 1.5], "mass": [0.8, 1.0, 1.2, 1.4], "latency": [0, 1, 2]}
    sweep = rb.sweep(policy, policy.task, grid, episodes=4, label=str(policy.path))
    rb.write_report(sweep, args.run / "robustness")
    print("4. kept ranges: " + ", ".join(f"{p} {r}" for p, r in sweep.ranges.items())
          + f"  (table: {args.run / 'robustness' / 'robustness.md'})")
    safety = SafetyConfig.load(args.safety) if args.safety else SafetyConfig()
    robot = robot_from_spec(args.robot, policy.task, seed=0, log_dir=args.out)
    result = run_deployment(policy, robot, args.duration, args.out, safety=safety)
    timing = result.summary["timing_ms"]
    print(f"5. deployed: {result.status} ({result.reason}); return {result.summary['return']:.1f}; "
          f"jitter p99 {timing['abs_jitter']['p99']:.2f} ms; obs->action p99 "
          f"{timing['obs_to_action_latency']['p99']:.2f} ms; log {result.directory}")
    raise SystemExit(result.exit_code)


if __name__ == "__main__":
    main()
