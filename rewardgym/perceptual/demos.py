"""Demonstrations: camera frames + states of a few successful episodes, in one compact file.

``rewardgym demos collect TASK --episodes N`` records them from the simulator's scripted
expert (Meta-World ships one per task: ``metaworld.policies``) or from a trained run's
deterministic policy (``--from-run RUN``), keeping successful episodes only. Each episode
runs until ``after_success`` steps past the first success step (Sermanet et al. 2016 cut
their videos when the task is done), or the episode limit.

File format (``.npz``, compressed; written atomically): arrays ``frames`` ``(N, H, W, 3)``
uint8, ``obs`` ``(N, obs_dim)`` float32, ``actions`` ``(N, act_dim)`` float32 (the action
taken *from* frame i; zeros on the last frame of an episode), ``episode`` ``(N,)`` int32,
``success`` ``(N,)`` bool (the task's success test at frame i), and ``meta`` (JSON: task,
camera, frame size, source, seeds, format version).
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from rewardgym.files import atomic_write_bytes
from rewardgym.envs.frames import FrameSpec

DEMOS_FORMAT = 1
DEMOS_MEMBERS = ("frames", "obs", "actions", "episode", "success", "meta")
"""The arrays of a demonstrations file: its members are these names + ``.npy`` and nothing else."""
MAX_DEMOS_BYTES = 2 * 2**30
"""Declared uncompressed size of a demonstrations file, all members together (2 GiB: ~170,000
frames of 64x64, 200 episodes of Meta-World's longest at 128x128; ``demos collect``'s default of
10 episodes is ~60 MB, and ``PerceptualModel.fit`` holds them all in memory)."""
MAX_FRAME_SIDE = 1024
"""Largest frame height or width (``demos collect --size``; perceptual rewards use 64)."""
MAX_DEMO_ROW = 65_536
"""Largest observation or action size of one frame."""
MAX_DEMOS_META_BYTES = 2**20
"""Largest ``meta`` array (JSON text: task, camera, seeds)."""
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what np.savez / np.savez_compressed write
_EOCD = struct.Struct("<4s4H2LH")  # zip's end-of-central-directory record


def read_npz(path: str | Path, members: Mapping[str, Callable[[tuple[int, ...], np.dtype], str | None]],
             max_bytes: int, error: type[Exception] = ValueError, what: str = "file") -> dict[str, np.ndarray]:
    """The arrays of a received ``.npz``, read only after the archive's declarations are checked.

    Before any member is decompressed: the file is at most ``max_bytes`` (plus headers); its
    end record lists at most ``len(members)`` entries and no ZIP64 end record; every member is
    ``<name>.npy`` for a name of ``members`` (once), stored or deflated, not encrypted, and the
    declared uncompressed sizes total at most ``max_bytes``. Then each member's ``.npy`` header
    alone is read (``numpy.lib.format``): no object dtype, a size that agrees with the member's
    declared size, and ``members[name](shape, dtype)`` returns no complaint. Only then are the
    arrays read (``allow_pickle=False``), each exactly its declared size.

    Raises:
        error: one line naming the file and the member (``what`` says what the file should be).
    """
    path = Path(path)
    limit = len(members)
    try:
        size = path.stat().st_size
        if size > max_bytes + limit * 2**16:
            raise error(f"{path}: {size:,} bytes, larger than a {what} can be ({max_bytes:,} bytes)")
        with open(path, "rb") as handle:  # the end record, as zipfile finds it, before zipfile parses anything
            handle.seek(max(0, size - _EOCD.size - 0xFFFF - 20))
            tail = handle.read()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})") from None
    last = len(tail) - _EOCD.size  # zipfile: a record without comment at the very end, else the last one
    end = last if last >= 0 and tail[last:last + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0" else \
        tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) - end < _EOCD.size:
        raise error(f"{path}: not a {what} (not a zip archive)")
    _, _, _, _, entries, directory, _, _ = _EOCD.unpack_from(tail, end)
    if end >= 20 and tail[end - 20:end - 16] == b"PK\x06\x07" or entries > limit or directory > limit * 1024:
        raise error(f"{path}: not a {what} (its zip directory declares {entries} members in {directory:,} bytes; "
                    f"a {what} has at most {limit})")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise error(f"{path}: not a {what} ({type(exc).__name__}: {exc})") from None
    with archive:
        infos = archive.infolist()
        total = 0
        seen: set[str] = set()
        for info in infos:
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            where = f"{path}: member {info.filename[:100]!r}"
            if len(infos) > limit or name not in members or name in seen:
                raise error(f"{where}: not a member of a {what} (expected {', '.join(f'{m}.npy' for m in members)})")
            seen.add(name)
            if info.compress_type not in _ZIP_METHODS or info.flag_bits & 0x1:
                raise error(f"{where}: compression method {info.compress_type} or encryption is not what numpy "
                            "writes (stored or deflate)")
            total += info.file_size
            if info.file_size > max_bytes or total > max_bytes:
                raise error(f"{where}: declares {info.file_size:,} bytes uncompressed ({total:,} with the members "
                            f"before it), more than a {what} can hold ({max_bytes:,} bytes)")
        for info in infos:
            name, where = info.filename[:-4], f"{path}: member {info.filename!r}"
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f".npy format version {version}")
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                    offset = member.tell()
            except Exception as exc:  # noqa: BLE001 - a corrupt stream, a bad header: one line
                raise error(f"{where}: not a .npy array ({type(exc).__name__}: {str(exc)[:200]})") from None
            if dtype.hasobject:
                raise error(f"{where}: object arrays are not read (allow_pickle=False)")
            nbytes = math.prod(shape) * dtype.itemsize
            if offset + nbytes != info.file_size:
                raise error(f"{where}: its header declares {shape} {dtype} ({nbytes:,} bytes) but the archive "
                            f"declares {info.file_size - offset:,} bytes of data")
            problem = members[name](shape, dtype)
            if problem:
                raise error(f"{where}: {problem}, got shape {shape} {dtype}")
        arrays = {}
        for info in infos:
            try:
                with archive.open(info) as member:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
                raise error(f"{path}: member {info.filename!r}: unreadable ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
    return arrays


def _demo_members() -> dict[str, Callable[[tuple[int, ...], np.dtype], str | None]]:
    """What each array of a demonstrations file may declare (rows are checked to agree after)."""
    def rows(kinds: str, ndims: tuple[int, ...]) -> Callable[[tuple[int, ...], np.dtype], str | None]:
        def check(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
            if len(shape) not in ndims or dtype.kind not in kinds or math.prod(shape[1:]) > MAX_DEMO_ROW:
                return (f"must be {' or '.join(f'{n}-d' for n in ndims)} with kind {kinds!r} and at most "
                        f"{MAX_DEMO_ROW} values per frame")
            return None
        return check

    def frames(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8 or not all(1 <= s <= MAX_FRAME_SIDE
                                                                            for s in shape[1:3]):
            return f"frames must be (N, H, W, 3) uint8 with H, W <= {MAX_FRAME_SIDE}"
        return None

    def meta(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_DEMOS_META_BYTES:
            return f"meta must be one JSON string of at most {MAX_DEMOS_META_BYTES:,} bytes"
        return None

    return {"frames": frames, "obs": rows("biuf", (1, 2)), "actions": rows("biuf", (1, 2)),
            "episode": rows("biuf", (1,)), "success": rows("biuf", (1,)), "meta": meta}


class DemoError(ValueError):
    """Demonstrations that cannot be collected, read or used (the message names the file)."""


@dataclass
class Demos:
    """A set of demonstrations (see the module docstring for the arrays' shapes)."""

    task: str
    frame_spec: FrameSpec
    frames: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    episode: np.ndarray
    success: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_episodes(self) -> int:
        return int(len(np.unique(self.episode)))

    def episodes(self) -> list[np.ndarray]:
        """Frame indices of each episode, in order: ``[array([0..T0-1]), ...]``."""
        return [np.flatnonzero(self.episode == e) for e in np.unique(self.episode)]

    def select(self, episode_ids: list[int] | np.ndarray) -> "Demos":
        """The demos restricted to some episodes (e.g. a held-out split)."""
        keep = np.isin(self.episode, np.asarray(episode_ids))
        return Demos(self.task, self.frame_spec, self.frames[keep], self.obs[keep], self.actions[keep],
                     self.episode[keep], self.success[keep], dict(self.meta))

    def save(self, path: str | Path) -> Path:
        """Write the compressed ``.npz`` atomically (a crash never leaves half a file)."""
        meta = {**self.meta, "format": DEMOS_FORMAT, "task": self.task, "frame_spec": self.frame_spec.as_dict()}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=self.frames, obs=self.obs, actions=self.actions, episode=self.episode,
                            success=self.success, meta=np.array(json.dumps(meta)))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Demos":
        """Read a demos file; a missing, foreign or newer-format file is a :class:`DemoError` naming it."""
        path = Path(path)
        if not path.is_file():
            raise DemoError(f"{path}: no such demonstrations file")
        arrays = read_npz(path, _demo_members(), MAX_DEMOS_BYTES, DemoError,
                          "rewardgym demonstrations file")  # declarations checked before anything is inflated
        missing = set(DEMOS_MEMBERS) - set(arrays)
        if missing:
            raise DemoError(f"{path}: not a rewardgym demonstrations file (missing arrays: {sorted(missing)})")
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError as exc:
            raise DemoError(f"{path}: the meta array is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DemoError(f"{path}: the meta array must be a JSON object")
        if meta.get("format") != DEMOS_FORMAT:
            raise DemoError(f"{path}: demonstrations format {meta.get('format')!r} is not supported "
                            f"(this rewardgym reads format {DEMOS_FORMAT})")
        frames = arrays["frames"]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DemoError(f"{path}: frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        n = len(frames)
        for key in ("obs", "actions", "episode", "success"):
            if arrays[key].ndim < 1 or len(arrays[key]) != n or arrays[key].dtype.kind not in "biuf":
                raise DemoError(f"{path}: {key} must be numeric with one row per frame ({n}), got shape "
                                f"{arrays[key].shape} {arrays[key].dtype}")
        for key in ("obs", "actions"):
            if arrays[key].dtype.kind == "f" and not np.isfinite(arrays[key]).all():
                raise DemoError(f"{path}: {key} holds non-finite values")
        try:
            return cls(str(meta["task"]), FrameSpec(**meta["frame_spec"]), frames, arrays["obs"], arrays["actions"],
                       arrays["episode"], arrays["success"], meta)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing meta field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise DemoError(f"{path}: not a valid rewardgym demonstrations file ({what})") from None

    def __repr__(self) -> str:
        lengths = [len(ix) for ix in self.episodes()]
        return (f"Demos({self.task}, {self.num_episodes} episodes, {len(self.frames)} frames of "
                f"{self.frame_spec.height}x{self.frame_spec.width} from camera {self.frame_spec.camera!r}, "
                f"lengths {min(lengths)}-{max(lengths)})")


def scripted_policy(task_id: str) -> Callable[[np.ndarray], np.ndarray]:
    """The simulator's scripted expert for ``task_id`` (``obs (obs_dim,) -> action``).

    Raises:
        DemoError: the task's simulator ships no scripted expert (use a trained run instead).
    """
    from rewardgym.envs.registry import get_task

    task = get_task(task_id)
    if task.family == "metaworld":
        from metaworld.policies import ENV_POLICY_MAP

        if task.base_id in ENV_POLICY_MAP:
            policy = ENV_POLICY_MAP[task.base_id]()
            return lambda obs: np.clip(policy.get_action(obs), -1.0, 1.0)
    raise DemoError(f"{task.id}: its simulator ships no scripted expert; record demonstrations from a "
                    f"trained run instead (rewardgym demos collect {task.short_name} --from-run RUN)")


def collect(task_id: str, episodes: int = 10, policy: Callable[[np.ndarray], np.ndarray] | None = None,
            source: str | None = None, size: int = 64,
            camera: str | None = "default", seed: int = 0, after_success: int = 10,
            max_attempts: int | None = None, on_episode: Callable[[int, bool, int], None] | None = None) -> Demos:
    """Record ``episodes`` successful demonstrations of ``task_id``.

    Args:
        task_id: a rewardgym task id.
        episodes: successful episodes to keep.
        policy: ``obs (obs_dim,) -> action`` that demonstrates (default: the simulator's scripted
            expert); a trained run's is :func:`rewardgym.runs.evaluate.demonstration_policy`.
        source: where ``policy`` comes from, recorded in the file (e.g. ``"run:runs/NAME"``).
        size: frame height and width in pixels.
        camera: MuJoCo camera name, or ``"default"`` for the family's workspace camera.
        seed: episode ``i`` of the attempts resets with ``seed + i``.
        after_success: frames kept after the first success step.
        max_attempts: give up after this many episodes (default ``3 * episodes``).
        on_episode: progress callback ``(attempt, succeeded, length)``.

    Raises:
        DemoError: no expert for the task, or too few successful episodes.
    """
    import gymnasium as gym

    from rewardgym.envs.registry import get_task

    task = get_task(task_id)
    if policy is None:
        policy, source = scripted_policy(task.id), "scripted"
    spec = FrameSpec.for_family(task.family, size=size, camera=camera)
    env = gym.make(task.id, reward="sparse")
    task_env = env.get_wrapper_attr("task_env").require(frames=spec)  # RewardInjection.task_env
    buffers: dict[str, list] = {k: [] for k in ("frames", "obs", "actions", "episode", "success")}
    kept, attempts = 0, 0
    max_attempts = max_attempts or 3 * episodes
    try:
        while kept < episodes and attempts < max_attempts:
            obs, info = env.reset(seed=seed + attempts)
            ep: dict[str, list] = {k: [] for k in buffers}
            first_success = None
            t = 0
            while True:
                action = np.asarray(policy(obs), dtype=np.float32)
                ep["frames"].append(task_env.raw_state()["frame"])
                ep["obs"].append(np.asarray(obs, dtype=np.float32))
                ep["success"].append(bool(info.get("success", False)))
                obs, _, terminated, truncated, info = env.step(action)
                ep["actions"].append(action)
                t += 1
                if info["success"] and first_success is None:
                    first_success = t
                done = terminated or truncated or (first_success is not None and t >= first_success + after_success)
                if done:
                    ep["frames"].append(task_env.raw_state()["frame"])
                    ep["obs"].append(np.asarray(obs, dtype=np.float32))
                    ep["success"].append(bool(info["success"]))
                    ep["actions"].append(np.zeros_like(action))
                    break
            attempts += 1
            succeeded = first_success is not None
            if on_episode is not None:
                on_episode(attempts, succeeded, t)
            if not succeeded:
                continue
            ep["episode"] = [kept] * len(ep["frames"])
            for key in buffers:
                buffers[key].extend(ep[key])
            kept += 1
    finally:
        env.close()
    if kept < episodes:
        raise DemoError(f"{task.id}: only {kept} of {attempts} demonstration episodes succeeded "
                        f"(wanted {episodes}); the demonstrator is not good enough")
    return Demos(task.id, spec, np.stack(buffers["frames"]), np.stack(buffers["obs"]),
                 np.stack(buffers["actions"]), np.asarray(buffers["episode"], dtype=np.int32),
                 np.asarray(buffers["success"], dtype=bool),
                 {"source": source or "policy", "seed": seed, "attempts": attempts,
                  "after_success": after_success})
