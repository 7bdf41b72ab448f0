"""``rewardgym export``: a trained run as a self-contained, deterministic policy file + manifest.

After Isaac Lab's exporter: the observation normaliser and the action bounds are baked
into the graph, the input is named ``obs`` and the output ``actions``::

    obs (B, obs_dim) float32, raw observation in the task's units (the manifest lists them)
      -> clip((obs - mean) * inv_std, -obs_clip, obs_clip)      the run's frozen normaliser
      -> actor MLP -> Gaussian mean                              deterministic action
      -> clamp(low, high)                                        the task's action bounds
    actions (B, act_dim) float32, in the task's action units

Files (``--out``, default ``RUN/export/<format>/``; each written atomically, the manifest last,
so a crash never leaves a manifest pointing at a missing or partial policy):

``policy.onnx`` | ``policy.pt``   the policy (ONNX from torch's exporter, opset 20 with torch 2.13; or TorchScript)
``manifest.json``                 task, observation layout (names, units, digest), action
                                  names/bounds/gear, control period, training reward and
                                  randomisation, versions, the policy file's sha256, parity
``parity.npz``                    the recorded observations and the run's torch actions
                                  (``ExportedPolicy.verify()`` re-checks any runtime)
``reward/``                       copies of the reward program files the run trained on

Parity: before anything is written, the exported file is run in its own runtime (ONNX
Runtime / ``torch.jit.load``) on at least 1,000 observations recorded from rollouts of the
policy in the task's simulator (half with exploration noise, for coverage) and compared
with the run's torch policy (``PPO.predict(deterministic=True)``); a max abs difference
above ``1e-5`` is an error.

Loading (:class:`ExportedPolicy`) treats the directory as untrusted data: the manifest is
validated field by field (finite numbers, sizes that agree with the graph), and the
policy file must match the manifest's sha256. ONNX files are data (a graph of standard
operators); TorchScript files are programs — load only ones you exported yourself.

Size: above 600 lines because export and loading are the two halves of one file format
(manifest, ONNX graph checks, parity record).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rewardgym.files import atomic_write_bytes, atomic_write_text, confined, read_json
from rewardgym.runs.algorithms import ALGORITHMS
from rewardgym.runs.directory import RunDir
from rewardgym.version import __version__

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "rewardgym-policy"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few kB
FORMATS = {"onnx": "policy.onnx", "torchscript": "policy.pt"}
PARITY_ATOL = 1e-5

# What a received policy file may be (checked before any runtime sees it; see validate_onnx_policy).
ONNX_OPS = frozenset({
    # what torch's exporter writes for rewardgym's exports (DeployablePolicy, opset 20): the
    # normaliser (Sub, Mul, Clip), the actor MLP with each activation of
    # rewardgym.learners.policies.ACTIVATIONS (Gemm, Tanh, Relu, Elu, Gelu), the action bounds (Max, Min)
    "Sub", "Mul", "Clip", "Gemm", "Tanh", "Relu", "Elu", "Gelu", "Max", "Min",
    # plain elementwise / linear ops another exporter version may write for the same layers
    "Add", "Div", "Neg", "Abs", "MatMul", "Identity", "Sigmoid", "LeakyRelu", "Selu", "Softplus", "Erf",
})
"""ONNX operators (default domain only) a policy graph may use. Everything else is refused,
control flow (``Loop``, ``Scan``, ``If``) and operators whose output size is computed from
data (``Expand``, ``Tile``, ``ConstantOfShape``, ``Resize``, ``Range``, ``Reshape`` ...) first:
with only these, every value's shape follows from the initializers' declared shapes and the
batch size, and the graph runs in one pass."""
ONNX_TENSOR_TYPES = frozenset({1, 10, 11, 16, 6, 7})
"""Initializer element types: FLOAT, FLOAT16, DOUBLE, BFLOAT16, INT32, INT64 (onnx.TensorProto)."""
MAX_ONNX_NODES = 512
"""Nodes of a policy graph, subgraphs included (rewardgym's widest config, 64 hidden layers, needs ~140)."""
MAX_ONNX_INITIALIZER_BYTES = 256 * 2**20
"""Declared size of all the graph's tensors together (256 MiB of weights: far above any MLP policy a
PPO config may ask for, rewardgym.learners.ppo.MAX_POLICY_PARAMETERS)."""
MAX_ONNX_BYTES = MAX_ONNX_INITIALIZER_BYTES + 16 * 2**20
"""Largest policy file read (its tensors plus the graph around them)."""
MAX_ONNX_ROW_ELEMENTS = 2**24
"""Elements of all the graph's values together, per observation of the batch (64 MiB of float32
per row; an MLP policy's values are its layer widths)."""
MAX_POLICY_IO = 65_536
"""Largest observation or action size in a manifest."""
MAX_PARITY_ROWS = 1_000_000
"""Most observations a parity record (parity.npz) may declare (an export records 1,000 by default)."""
MAX_PARITY_BYTES = 256 * 2**20
"""Declared uncompressed size of parity.npz, its members together."""


class ExportError(ValueError):
    """A run cannot be exported, or an exported policy/manifest is invalid (names file and field)."""


class DeployablePolicy(nn.Module):
    """Raw observation -> bounded deterministic action, everything inside the graph.

    Args:
        actor: the Gaussian head's mean network, normalised obs ``(B, obs_dim)`` -> ``(B, act_dim)``.
        obs_mean, obs_inv_std: ``(obs_dim,)`` float32 normaliser (``None``: no normalisation).
        obs_clip: normalised observations are clipped to ``[-obs_clip, obs_clip]``.
        low, high: ``(act_dim,)`` action bounds.

    ``forward(obs (B, obs_dim) float32) -> actions (B, act_dim) float32``.
    """

    def __init__(self, actor: nn.Module, obs_mean: torch.Tensor | None, obs_inv_std: torch.Tensor | None,
                 obs_clip: float, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.actor = actor
        self.normalize = obs_mean is not None
        dim = int(low.shape[0])
        obs_dim = int(obs_mean.shape[0]) if obs_mean is not None else 0
        self.register_buffer("obs_mean", obs_mean if obs_mean is not None else torch.zeros(obs_dim))
        self.register_buffer("obs_inv_std", obs_inv_std if obs_inv_std is not None else torch.ones(obs_dim))
        self.obs_clip = float(obs_clip)
        self.register_buffer("low", low.reshape(dim).to(torch.float32))
        self.register_buffer("high", high.reshape(dim).to(torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs
        if self.normalize:
            x = torch.clamp((x - self.obs_mean) * self.obs_inv_std, -self.obs_clip, self.obs_clip)
        return torch.minimum(torch.maximum(self.actor(x), self.low), self.high)


# ----------------------------------------------------------------------------- from a run
def load_run_agent(run_path: str | Path) -> tuple[RunDir, dict[str, Any], Any]:
    """``(run, config, PPO)`` of a rewardgym PPO run, its checkpoint read by ``load_ppo_checkpoint``.

    Raises:
        RunError: not a run, no checkpoint, another task's checkpoint.
        ExportError: not a rewardgym PPO run, or a policy that cannot be exported.
    """
    from rewardgym.runs.evaluate import RunPolicy

    run = RunDir.open(run_path)
    config = run.config()
    algorithm = ALGORITHMS.get(config.get("algo"))
    if algorithm is None or not algorithm.exportable:
        raise ExportError(f"{run.config_path}: algo {config.get('algo')!r}: export supports rewardgym's PPO "
                          "runs (algo 'ppo'); export a Stable-Baselines3 policy with SB3's own ONNX recipe")
    env = gym.make(config["task"])
    try:
        agent = RunPolicy(run, env).agent
    finally:
        env.close()
    if not isinstance(agent.observation_space, gym.spaces.Box) or not isinstance(agent.action_space, gym.spaces.Box):
        raise ExportError(f"{run.path}: export needs Box observations and actions, the run has "
                          f"{agent.observation_space} -> {agent.action_space}")
    return run, config, agent


def deployable_policy(agent: Any) -> DeployablePolicy:
    """The :class:`DeployablePolicy` of a trained :class:`~rewardgym.learners.ppo.PPO` (CPU, eval mode)."""
    import copy

    head = agent.policy.head
    if not hasattr(head, "mean"):
        raise ExportError(f"export supports Gaussian MLP policies, got {type(agent.policy).__name__}")
    norm = agent.obs_normalizer
    mean = norm._mean32.detach().cpu().clone() if norm is not None else None
    inv_std = norm._inv_std32.detach().cpu().clone() if norm is not None else None
    clip = norm.clip if norm is not None else math.inf
    space = agent.action_space
    policy = DeployablePolicy(copy.deepcopy(head.mean).cpu(), mean, inv_std, clip,
                              torch.as_tensor(np.asarray(space.low, dtype=np.float32)),
                              torch.as_tensor(np.asarray(space.high, dtype=np.float32)))
    return policy.eval()


def record_observations(task: str, policy: Any, count: int = 1000, num_envs: int = 8, seed: int = 12_345,
                        noise: float = 0.3) -> np.ndarray:
    """``(N >= count, obs_dim)`` float32 observations from rollouts of ``policy`` in ``task``.

    ``policy`` maps ``(B, obs_dim)`` float32 to actions; envs with an odd index add Gaussian
    noise of std ``noise`` (action units) to their actions, so the record also covers states
    the deterministic policy would not visit.
    """
    venv = gym.make_vec(task, num_envs=num_envs, reward="env")
    rng = np.random.default_rng(seed)
    steps = -(-count // num_envs)
    out = np.empty((steps, num_envs, venv.single_observation_space.shape[0]), dtype=np.float32)
    noisy = (np.arange(num_envs) % 2 == 1)[:, None]
    low, high = venv.single_action_space.low, venv.single_action_space.high
    try:
        obs, _ = venv.reset(seed=seed)
        for t in range(steps):
            out[t] = obs
            action = np.asarray(policy(obs.astype(np.float32)), dtype=np.float64)
            action = np.where(noisy, np.clip(action + rng.normal(0.0, noise, action.shape), low, high), action)
            obs, *_ = venv.step(action)
    finally:
        venv.close()
    return out.reshape(-1, out.shape[-1])


# ----------------------------------------------------------------------------- writing
def _to_onnx(policy: DeployablePolicy, obs_dim: int, metadata: Mapping[str, str]) -> bytes:
    import onnx

    example = torch.zeros(2, obs_dim)
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed. Skipping ..." notes
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(policy, (example,), None, input_names=["obs"], output_names=["actions"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                        external_data=False, verbose=False)
        finally:
            quiet.setLevel(level)
    model = program.model_proto
    onnx.helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _to_torchscript(policy: DeployablePolicy) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(policy), buffer)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"rewardgym": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "gymnasium", "mujoco", "onnx", "onnxruntime"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _reward_files(run: RunDir, config: Mapping[str, Any]) -> list[Path]:
    """Program files of the run's reward that the run directory holds a copy of (regular
    files directly in it: a received run's symbolic link is not followed out of it)."""
    tokens = str(config.get("reward", "")).replace("*", " ").replace("+", " ").split()
    paths = [run.path / Path(t).name for t in tokens if t.endswith(".py")]
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def export_run(run_path: str | Path, fmt: str = "onnx", out: str | Path | None = None,
               parity_observations: int = 1000, atol: float = PARITY_ATOL) -> Path:
    """Export a run (see the module docstring); returns the output directory.

    Raises:
        ExportError: unknown format, an unexportable run, or parity worse than ``atol``.
        RunError: the run directory or its checkpoint is unusable.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if parity_observations < 1000:
        raise ExportError(f"parity needs at least 1000 observations, got {parity_observations}")
    from rewardgym.envs.observation import NotDeployableError, observation_layout

    run, config, agent = load_run_agent(run_path)
    task = config["task"]
    try:
        layout = observation_layout(task)
    except NotDeployableError as exc:
        raise ExportError(str(exc)) from None
    obs_dim = int(agent.observation_space.shape[0])
    if layout.size != obs_dim:
        raise ExportError(f"{run.path}: the policy takes {obs_dim} observations but {task}'s layout has {layout.size}")
    policy = deployable_policy(agent)

    def reference(obs: np.ndarray) -> np.ndarray:
        return agent.predict(obs, deterministic=True)[0].astype(np.float32)

    observations = record_observations(task, reference, count=parity_observations)
    expected = reference(observations)
    metadata = {"rewardgym.task": task, "rewardgym.layout_digest": layout.digest, "rewardgym.run": run.path.name}
    data = _to_onnx(policy, obs_dim, metadata) if fmt == "onnx" else _to_torchscript(policy)
    runtime = _load_runtime(fmt, data, "<export>", obs_dim)
    got = runtime(observations)
    max_diff = float(np.max(np.abs(got - expected)))
    if not max_diff <= atol:
        raise ExportError(f"{run.path}: exported {fmt} policy differs from the run's torch policy by {max_diff:.3g} "
                          f"(> {atol:g}) on {len(observations)} recorded observations")

    out_dir = Path(out) if out is not None else run.path / "export" / fmt
    out_dir.mkdir(parents=True, exist_ok=True)
    policy_file = FORMATS[fmt]
    atomic_write_bytes(out_dir / policy_file, data)
    buffer = io.BytesIO()
    np.savez(buffer, obs=observations, actions=expected)
    atomic_write_bytes(out_dir / "parity.npz", buffer.getvalue())
    rewards = []
    for path in _reward_files(run, config):
        (out_dir / "reward").mkdir(exist_ok=True)
        shutil.copyfile(path, out_dir / "reward" / path.name)
        rewards.append({"file": f"reward/{path.name}", "sha256": _sha256(path.read_bytes())})
    hyper = config.get("hyperparams", {})
    manifest = {
        "format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": task, "simulator": layout.base_id,
        "policy": {"file": policy_file, "format": fmt, "sha256": _sha256(data),
                   "input": {"name": "obs", "shape": ["batch", obs_dim], "dtype": "float32"},
                   "output": {"name": "actions", "shape": ["batch", len(layout.action_names)], "dtype": "float32"},
                   "deterministic": True,
                   "inside": ["observation normalisation (running mean/std frozen at the checkpoint)",
                              "observation clipping", "Gaussian mean (deterministic action)", "action bounds"]},
        "observation": {**layout.to_json(),
                        "normalization": {"clip": policy.obs_clip if policy.normalize else None,
                                          "mean": policy.obs_mean.tolist() if policy.normalize else None,
                                          "std": (1.0 / policy.obs_inv_std).tolist() if policy.normalize else None}},
        "action": {"size": len(layout.action_names), "names": list(layout.action_names),
                   "low": list(layout.action_low), "high": list(layout.action_high), "gear": list(layout.action_gear),
                   "units": "actuator command; effort = gear x command (N m for a hinge motor)"},
        "control_period_s": layout.control_period_s, "control_rate_hz": 1.0 / layout.control_period_s,
        "training": {"run": run.path.name, "algo": config.get("algo"), "seed": config.get("seed"),
                     "steps": int(agent.global_step), "reward": config.get("reward"), "reward_files": rewards,
                     "shaping": config.get("shaping"), "randomize": config.get("randomize"),
                     "hidden_sizes": hyper.get("hidden_sizes", list(agent.config.hidden_sizes)),
                     "activation": agent.config.activation},
        "parity": {"observations": int(len(observations)), "max_abs_diff": max_diff, "atol": atol,
                   "reference": "PPO.predict(deterministic=True) of the run's checkpoint", "file": "parity.npz",
                   "runtime": "onnxruntime" if fmt == "onnx" else "torch.jit"},
        "versions": _versions(),
    }
    atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return out_dir


# ----------------------------------------------------------------------------- loading
def _refuse_external_data(model: Any, where: str) -> None:
    """An ONNX file may point tensors at other files ("external data", any path); an exported
    policy is self-contained, so a received one that does is refused before a runtime reads it."""
    from onnx.external_data_helper import uses_external_data

    for tensor, _ in _tensors(model.graph):
        if uses_external_data(tensor) or len(tensor.external_data):
            raise ExportError(f"{where}: tensor {tensor.name!r} refers to external data; an exported policy "
                              "must be self-contained (re-export it with `rewardgym export`)")


def _graphs(graph: Any):
    """``graph`` and every subgraph held by a node attribute, at any depth."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _tensors(graph: Any):
    """``(tensor, node or None)`` of every tensor in the graph, subgraphs included (onnx's own
    walker is private): initializers, sparse initializers' parts and tensor attributes."""
    for sub in _graphs(graph):
        for tensor in sub.initializer:
            yield tensor, None
        for sparse in sub.sparse_initializer:
            yield sparse.values, None
            yield sparse.indices, None
        for node in sub.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t, node
                for tensor in attr.tensors:
                    yield tensor, node
                if attr.HasField("sparse_tensor"):
                    yield attr.sparse_tensor.values, node
                for sparse in attr.sparse_tensors:
                    yield sparse.values, node


def _node_name(node: Any) -> str:
    return f"node {node.name or (node.output[0] if node.output else '?')!r}"


def validate_onnx_policy(data: bytes, where: str, obs_dim: int | None = None) -> None:
    """Refuse an ONNX policy that is not a plain feed-forward graph of bounded size, before any
    runtime session exists (a session runs graph optimisations, and the caller runs the graph).

    Checked, in order: the file size (:data:`MAX_ONNX_BYTES`); every node, subgraphs included,
    uses an operator of :data:`ONNX_OPS` in the default domain and there are at most
    :data:`MAX_ONNX_NODES`; no model-local functions or training graphs; tensors are
    self-contained (no external data), of :data:`ONNX_TENSOR_TYPES`, and their declared sizes
    total at most :data:`MAX_ONNX_INITIALIZER_BYTES`; one input ``obs`` and one output
    ``actions``; and, with the input fixed to ``(batch, obs_dim)``, ONNX's shape inference gives
    every value a static shape with ``batch`` at most once and at most
    :data:`MAX_ONNX_ROW_ELEMENTS` elements per row over all values (no broadcast blow-up).

    Raises:
        ExportError: one line naming the file and, for a graph, the node and its operator.
    """
    import onnx

    if len(data) > MAX_ONNX_BYTES:
        raise ExportError(f"{where}: {len(data):,} bytes; a policy file is at most {MAX_ONNX_BYTES:,} bytes")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - any unreadable graph gets one clear line
        raise ExportError(f"{where}: not an ONNX model ({type(exc).__name__})") from None
    nodes = 0
    for graph in _graphs(model.graph):
        for node in graph.node:
            nodes += 1
            if nodes > MAX_ONNX_NODES:
                raise ExportError(f"{where}: more than {MAX_ONNX_NODES} nodes; a policy graph is a small MLP")
            if node.domain not in ("", "ai.onnx") or node.op_type not in ONNX_OPS:
                op = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
                raise ExportError(f"{where}: {_node_name(node)} uses operator {op!r}, which a policy graph does not "
                                  f"need (allowed: {', '.join(sorted(ONNX_OPS))})")
    for graph in _graphs(model.graph):
        if len(graph.sparse_initializer):  # a runtime densifies them to their declared shape
            raise ExportError(f"{where}: sparse initializer {graph.sparse_initializer[0].values.name!r}; a policy "
                              "graph's weights are dense")
        for node in graph.node:  # an allowed operator has no subgraph to run, nor a sparse tensor
            if any(attr.HasField("g") or len(attr.graphs) or attr.HasField("sparse_tensor") or len(attr.sparse_tensors)
                   for attr in node.attribute):
                raise ExportError(f"{where}: {_node_name(node)} ({node.op_type}) carries a subgraph or a sparse "
                                  "tensor; a policy graph has neither")
    if len(model.functions) or len(model.training_info):
        raise ExportError(f"{where}: the model defines functions or training graphs; a policy graph has neither")
    _refuse_external_data(model, where)
    total = 0
    for tensor, node in _tensors(model.graph):
        what = f"tensor {tensor.name!r}" + (f" of {_node_name(node)}" if node is not None else "")
        if tensor.data_type not in ONNX_TENSOR_TYPES or any(d < 0 for d in tensor.dims):
            raise ExportError(f"{where}: {what} has element type {tensor.data_type} or shape {list(tensor.dims)}, "
                              "not a numeric weight")
        total += math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        if total > MAX_ONNX_INITIALIZER_BYTES:
            raise ExportError(f"{where}: {what} brings the declared tensor sizes above "
                              f"{MAX_ONNX_INITIALIZER_BYTES:,} bytes; a policy is smaller")
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if [i.name for i in inputs] != ["obs"] or [o.name for o in graph.output] != ["actions"] or any(
            v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT for v in (*inputs, *graph.output)):
        raise ExportError(f"{where}: the graph must take one float32 input 'obs' and give one float32 output "
                          f"'actions', it takes {[i.name for i in inputs]} and gives {[o.name for o in graph.output]}")
    declared = inputs[0].type.tensor_type.shape.dim
    if obs_dim is None:
        obs_dim = declared[1].dim_value if len(declared) == 2 and declared[1].HasField("dim_value") else 0
    if not 1 <= obs_dim <= MAX_POLICY_IO:
        raise ExportError(f"{where}: input 'obs' must have shape (batch, size) with 1 <= size <= {MAX_POLICY_IO}")
    # shapes as inference derives them from the input (batch, obs_dim) and the weights alone
    inputs[0].type.tensor_type.ClearField("shape")
    inputs[0].type.tensor_type.shape.dim.add().dim_param = "batch"
    inputs[0].type.tensor_type.shape.dim.add().dim_value = obs_dim
    del graph.value_info[:]
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True).graph
    except Exception as exc:  # noqa: BLE001 - inconsistent shapes or types
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ExportError(f"{where}: the graph's shapes are inconsistent ({type(exc).__name__}: {first})") from None
    shapes = {v.name: v for v in list(inferred.value_info) + list(inferred.output)}
    row_elements = 0
    for node in graph.node:
        for name in node.output:
            value = shapes.get(name)
            dims = value.type.tensor_type.shape.dim if value is not None else None
            static = dims is not None and value.type.tensor_type.HasField("shape") and all(
                d.HasField("dim_value") or d.dim_param == "batch" for d in dims)
            if not static or sum(d.dim_param == "batch" for d in dims) > 1:
                raise ExportError(f"{where}: {_node_name(node)} ({node.op_type}) has no static (batch, ...) shape "
                                  f"for its output {name!r}; a policy graph's shapes follow from its input")
            row_elements += math.prod(d.dim_value for d in dims if d.HasField("dim_value"))
            if row_elements > MAX_ONNX_ROW_ELEMENTS:
                raise ExportError(f"{where}: {_node_name(node)} ({node.op_type}) brings the graph's values above "
                                  f"{MAX_ONNX_ROW_ELEMENTS:,} elements per observation; a policy is smaller")


def _load_runtime(fmt: str, data: bytes, where: str, obs_dim: int | None = None):
    """``(B, obs_dim) -> (B, act_dim)`` float32 callable running ``data`` in its own runtime
    (an ONNX graph only after :func:`validate_onnx_policy`)."""
    if fmt == "onnx":
        validate_onnx_policy(data, where, obs_dim)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a small MLP: one thread has the lowest latency
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any unreadable graph gets one clear line
            raise ExportError(f"{where}: ONNX Runtime cannot load the policy ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

        def run_onnx(obs: np.ndarray) -> np.ndarray:
            return session.run(["actions"], {"obs": obs})[0]

        return run_onnx
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{where}: torch.jit cannot load the policy ({type(exc).__name__})") from None

    @torch.no_grad()
    def run_torchscript(obs: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(obs)).numpy()

    return run_torchscript


def _field(manifest: Mapping[str, Any], dotted: str, kind: type | tuple[type, ...], where: str) -> Any:
    value: Any = manifest
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ExportError(f"{where}: missing field {dotted!r}")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ExportError(f"{where}: field {dotted!r} has type {type(value).__name__}")
    return value


def _finite_list(manifest: Mapping[str, Any], dotted: str, size: int, where: str) -> np.ndarray:
    values = _field(manifest, dotted, list, where)
    if len(values) != size or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ExportError(f"{where}: field {dotted!r} must be {size} numbers")
    array = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ExportError(f"{where}: field {dotted!r} holds a non-finite number")
    return array


class ExportedPolicy:
    """A policy written by :func:`export_run`: validated manifest + its runtime.

    Attributes:
        manifest: the manifest (validated).
        task: task id it was trained on.
        obs_dim, act_dim: sizes.
        low, high: ``(act_dim,)`` float32 action bounds.
        control_period_s: seconds per policy step.
        layout_digest: the observation layout it expects.
        path: the policy file.

    Calling it maps ``(B, obs_dim)`` (or ``(obs_dim,)``) observations to float32 actions.
    """

    def __init__(self, manifest: dict[str, Any], path: Path, runtime):
        self.manifest = manifest
        self.path = path
        self._run = runtime
        self.task: str = manifest["task"]
        self.obs_dim: int = manifest["policy"]["input"]["shape"][1]
        self.act_dim: int = manifest["policy"]["output"]["shape"][1]
        self.low = np.asarray(manifest["action"]["low"], dtype=np.float32)
        self.high = np.asarray(manifest["action"]["high"], dtype=np.float32)
        self.control_period_s: float = float(manifest["control_period_s"])
        self.layout_digest: str = manifest["observation"]["digest"]

    @classmethod
    def load(cls, path: str | Path, trusted: bool = False) -> "ExportedPolicy":
        """Load an export directory, its ``manifest.json``, or its policy file.

        ONNX policies are data and load from anyone. A TorchScript file is a program
        (``torch.jit.load`` runs its code), so it loads only with ``trusted=True``: pass it
        for files you exported yourself (``--trusted`` on the command line).

        Raises:
            ExportError: naming the file and the field that is wrong.
        """
        path = Path(path)
        directory = path if path.is_dir() else path.parent
        manifest_path = directory / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ExportError(f"{path}: no {MANIFEST_NAME} (expected an export directory from `rewardgym export`)")
        where = str(manifest_path)
        try:
            manifest = read_json(manifest_path, max_bytes=MAX_MANIFEST_BYTES)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ExportError(f"{where}: not a rewardgym policy manifest (format must be {MANIFEST_FORMAT!r})")
        if manifest.get("format_version") != MANIFEST_VERSION:
            raise ExportError(f"{where}: format_version {manifest.get('format_version')!r} is not supported "
                              f"(this rewardgym reads {MANIFEST_VERSION})")
        _field(manifest, "task", str, where)
        fmt = _field(manifest, "policy.format", str, where)
        file_name = _field(manifest, "policy.file", str, where)
        if fmt not in FORMATS or file_name != FORMATS[fmt]:
            raise ExportError(f"{where}: field 'policy.file' must be {FORMATS.get(fmt, 'policy.onnx')!r} for "
                              f"format {fmt!r}")
        if fmt == "torchscript" and not trusted:
            raise ExportError(f"{where}: a TorchScript policy is a program and is loaded only with --trusted "
                              "(trusted=True; your own exports only); received policies should be ONNX "
                              "(`rewardgym export RUN --format onnx`)")
        if path.is_file() and path.name not in (file_name, MANIFEST_NAME):
            raise ExportError(f"{path}: the manifest next to it describes {file_name}, not {path.name}")
        shapes = [_field(manifest, f"policy.{k}.shape", list, where) for k in ("input", "output")]
        for key, shape in zip(("input", "output"), shapes):
            if len(shape) != 2 or not isinstance(shape[1], int) or isinstance(shape[1], bool) or shape[1] < 1:
                raise ExportError(f"{where}: field 'policy.{key}.shape' must be ['batch', size]")
        obs_dim, act_dim = shapes[0][1], shapes[1][1]
        if max(obs_dim, act_dim) > MAX_POLICY_IO:
            raise ExportError(f"{where}: fields 'policy.input.shape' and 'policy.output.shape' must be at most "
                              f"{MAX_POLICY_IO} wide")
        if _field(manifest, "observation.size", int, where) != obs_dim:
            raise ExportError(f"{where}: field 'observation.size' disagrees with policy.input.shape")
        _field(manifest, "observation.digest", str, where)
        low = _finite_list(manifest, "action.low", act_dim, where)
        high = _finite_list(manifest, "action.high", act_dim, where)
        if np.any(low > high):
            raise ExportError(f"{where}: field 'action.low' is above 'action.high'")
        period = _field(manifest, "control_period_s", (int, float), where)
        if not (math.isfinite(period) and 0.0 < period <= 10.0):
            raise ExportError(f"{where}: field 'control_period_s' = {period!r} must be in (0, 10] seconds")
        try:  # the policy file is the export's own: no link out of its directory
            policy_path = confined(directory, file_name, f"{where}: field 'policy.file'", plain=True)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        if not policy_path.is_file():
            raise ExportError(f"{where}: the policy file {policy_path} is missing")
        if fmt == "onnx" and policy_path.stat().st_size > MAX_ONNX_BYTES:
            raise ExportError(f"{policy_path}: {policy_path.stat().st_size:,} bytes; a policy file is at most "
                              f"{MAX_ONNX_BYTES:,} bytes")
        data = policy_path.read_bytes()
        if _sha256(data) != _field(manifest, "policy.sha256", str, where):
            raise ExportError(f"{policy_path}: sha256 does not match the manifest's policy.sha256 "
                              "(changed after export?)")
        runtime = _load_runtime(fmt, data, str(policy_path), obs_dim)
        policy = cls(manifest, policy_path, runtime)
        probe = policy(np.zeros((1, obs_dim), dtype=np.float32))
        if probe.shape != (1, act_dim):
            raise ExportError(f"{policy_path}: the graph maps (1, {obs_dim}) to {probe.shape}, the manifest says "
                              f"(1, {act_dim})")
        return policy

    def __call__(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs.reshape(1, -1) if single else obs
        if batch.shape[1] != self.obs_dim:
            raise ValueError(f"{self.path}: expected observations of size {self.obs_dim}, got {batch.shape[1]}")
        actions = self._run(np.ascontiguousarray(batch))
        return actions[0] if single else actions

    def verify(self, atol: float = PARITY_ATOL) -> float:
        """Max abs difference between this runtime and the run's torch policy on the recorded
        parity observations (``parity.npz``); raises :class:`ExportError` above ``atol``."""
        from rewardgym.perceptual.demos import read_npz

        path = self.path.parent / "parity.npz"

        def rows(width: int):
            def check(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
                ok = dtype == np.float32 and len(shape) == 2 and shape[1] == width and shape[0] <= MAX_PARITY_ROWS
                return None if ok else f"must be (N <= {MAX_PARITY_ROWS:,}, {width}) float32"
            return check

        record = read_npz(path, {"obs": rows(self.obs_dim), "actions": rows(self.act_dim)},
                          MAX_PARITY_BYTES, ExportError, "parity record")
        if set(record) != {"obs", "actions"} or len(record["obs"]) != len(record["actions"]):
            raise ExportError(f"{path}: a parity record holds 'obs' and 'actions' with one row each per observation")
        obs, expected = record["obs"], record["actions"]
        diff = float(np.max(np.abs(self(obs) - expected)))
        if not diff <= atol:
            raise ExportError(f"{self.path}: differs from the run's torch policy by {diff:.3g} (> {atol:g})")
        return diff

    def __repr__(self) -> str:
        return (f"ExportedPolicy({self.path}, task={self.task}, obs {self.obs_dim} -> actions {self.act_dim}, "
                f"{1.0 / self.control_period_s:g} Hz)")


def evaluate_exported(path: str | Path, episodes: int = 10, seed: int = 10_000, reward: str = "env",
                      randomize: Any = None, trusted: bool = False) -> dict[str, Any]:
    """``rewardgym eval`` of an exported policy: episodes in the task's simulator with the
    policy file's own runtime; writes ``eval.json`` next to the manifest.

    ``reward`` is what ``return`` reports (default the simulator's own reward; the manifest
    records the training reward, copied under ``reward/`` when it was a program).
    """
    from rewardgym.runs.evaluate import evaluate_policy

    policy = ExportedPolicy.load(path, trusted=trusted)
    report = evaluate_policy(policy, policy.task, episodes=episodes, seed=seed, reward=reward, randomize=randomize)
    report = {"policy": str(policy.path), "task": policy.task,
              "algo": f"exported {policy.manifest['policy']['format']}",
              "training_reward": policy.manifest.get("training", {}).get("reward"), **report}
    atomic_write_text(policy.path.parent / "eval.json", json.dumps(report, indent=2) + "\n")
    return report


def is_exported_policy(path: str | Path) -> bool:
    """Whether ``path`` is an export directory, its manifest, or a policy file next to a manifest."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    return (directory / MANIFEST_NAME).is_file() and (path.is_dir() or path.suffix in (".onnx", ".pt", ".json"))


__all__ = ["DeployablePolicy", "ExportError", "ExportedPolicy", "deployable_policy", "evaluate_exported", "export_run",
           "is_exported_policy", "load_run_agent", "record_observations"]
