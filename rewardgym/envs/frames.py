"""Camera frames as part of a task's raw state (for rewards that look at pixels).

Perceptual rewards (Sermanet et al. 2016) score camera images, not simulator state. A
:class:`FrameSpec` says which camera and size; :meth:`rewardgym.envs.task.TaskEnv.require`
turns it on for one env, after which every raw row carries ``"frame"``: ``(H, W, 3)``
uint8, rendered off-screen with MuJoCo's own renderer (OSMesa on a headless CPU machine,
EGL with a GPU; see :func:`headless_gl_default`). Rows stack to ``raw_batch(state)["frame"]``
``(B, H, W, 3)``.

Frames are meant for learned rewards, not for people: they render without shadows,
reflections or anti-aliasing, from a copy of the model with simplified meshes
(:func:`render_model`), which makes a 64x64 Meta-World frame ~10x cheaper in software.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def headless_gl_default() -> None:
    """Choose MuJoCo's off-screen GL back-end before MuJoCo is first imported, unless the user did.

    EGL where an NVIDIA driver exists, OSMesa (Debian's ``libosmesa6``) on CPU-only machines;
    only when there is no display and neither ``MUJOCO_GL`` nor ``PYOPENGL_PLATFORM`` is set.
    MuJoCo reads the variable when it is imported, so this is called where simulators are
    built (:func:`rewardgym.wrappers.make.make_task_env`) and by the CLI; ``import rewardgym``
    itself writes nothing to ``os.environ``.
    """
    if "mujoco" in sys.modules:
        return  # too late to choose; the user's import decided
    env = os.environ
    if "MUJOCO_GL" not in env and not env.get("DISPLAY"):
        env["MUJOCO_GL"] = "egl" if os.path.exists("/dev/nvidia0") else "osmesa"
    if env.get("MUJOCO_GL") in ("osmesa", "egl"):
        env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
    if env.get("MUJOCO_GL") == "osmesa":  # llvmpipe: frames are small; 1 thread (rewardgym.threads)
        env.setdefault("LP_NUM_THREADS", "1")

# A camera that sees the whole workspace, per family (MuJoCo camera names of the models).
# Meta-World's corner cameras are mounted upside down, hence ``flip``.
DEFAULT_CAMERAS = {"metaworld": ("corner3", True), "fetch": (None, False), "locomotion": (None, False)}


@dataclass(frozen=True)
class FrameSpec:
    """Which frames a reward needs.

    Attributes:
        camera: MuJoCo camera name; ``None`` = the model's free default camera.
        height, width: frame size in pixels.
        flip: turn the image upside down (for cameras mounted upside down).
        max_faces_per_mesh: mesh simplification for speed (see :func:`render_model`);
            ``None`` renders full meshes.
    """

    camera: str | None = "corner3"
    height: int = 64
    width: int = 64
    flip: bool = True
    max_faces_per_mesh: int | None = 1000

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_family(cls, family: str, size: int = 64, camera: str | None = "default") -> "FrameSpec":
        default_cam, flip = DEFAULT_CAMERAS.get(family, (None, False))
        if camera != "default":
            default_cam, flip = camera, False
        return cls(camera=default_cam, height=int(size), width=int(size), flip=flip)


def render_model(model: Any, height: int, width: int, max_faces_per_mesh: int | None = 1000) -> Any:
    """A copy of ``model`` set up for cheap small off-screen frames.

    Software rendering (OSMesa) spends its time on triangles, not pixels: Meta-World's
    Sawyer meshes have ~68k faces and cost ~4 ms a frame at any size. The copy gets

    * meshes simplified by vertex clustering (vertices snapped to a grid whose cell grows
      until the mesh has at most ``max_faces_per_mesh`` faces; faces that collapse are
      dropped): ~10x fewer triangles, the same silhouettes at 64x64;
    * an off-screen buffer of the frame's size, no multisampling, no shadow map.

    Poses come from the simulator's ``MjData`` at render time, so the copy stays exact as
    long as the simulator changes only its state (Meta-World moves bodies through qpos and
    ``data``; a change to ``model`` after the copy would not be seen).

    Args:
        model: the simulator's ``mujoco.MjModel`` (not modified).
        height, width: frame size, pixels.
        max_faces_per_mesh: face budget per mesh (``None`` keeps full meshes).
    """
    import copy

    out = copy.copy(model)  # MjModel.__copy__ is a deep copy
    out.vis.global_.offwidth = max(int(width), 1)
    out.vis.global_.offheight = max(int(height), 1)
    out.vis.quality.offsamples = 0
    out.vis.quality.shadowsize = 0
    if max_faces_per_mesh:
        for mesh in range(out.nmesh):
            _simplify_mesh(out, mesh, max_faces_per_mesh)
    return out


def _simplify_mesh(model: Any, mesh: int, max_faces: int) -> None:
    """Vertex-clustering decimation of one mesh, in place (faces only; vertices are kept)."""
    nface = int(model.mesh_facenum[mesh])
    if nface <= max_faces:
        return
    fadr, vadr, vnum = int(model.mesh_faceadr[mesh]), int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
    faces = model.mesh_face[fadr:fadr + nface].copy()  # (F, 3) indices local to the mesh
    verts = model.mesh_vert[vadr:vadr + vnum]
    extent = float(np.max(np.ptp(verts, axis=0))) or 1.0
    cell = extent / 64.0
    for _ in range(12):
        keys = np.floor(verts / cell).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        mapped = first[inverse.reshape(-1)][faces]  # each vertex -> its cluster's representative
        keep = (mapped[:, 0] != mapped[:, 1]) & (mapped[:, 1] != mapped[:, 2]) & (mapped[:, 0] != mapped[:, 2])
        _, unique_rows = np.unique(np.sort(mapped[keep], axis=1), axis=0, return_index=True)
        kept = np.flatnonzero(keep)[np.sort(unique_rows)]
        if len(kept) <= max_faces:
            break
        cell *= 1.4
    n = len(kept)
    model.mesh_face[fadr:fadr + n] = mapped[kept]
    model.mesh_facenormal[fadr:fadr + n] = model.mesh_facenormal[fadr:fadr + nface][kept].copy()
    if model.mesh_texcoordadr[mesh] >= 0:
        model.mesh_facetexcoord[fadr:fadr + n] = model.mesh_facetexcoord[fadr:fadr + nface][kept].copy()
    model.mesh_facenum[mesh] = n


class FrameRenderer:
    """Off-screen renderer of one MuJoCo simulator (``sim.model``, ``sim.data``).

    Args:
        sim: the simulator env (Meta-World, Gymnasium MuJoCo or Gymnasium-Robotics Fetch).
        spec: camera and size.

    Raises:
        ValueError: the simulator is not a MuJoCo env, or has no camera ``spec.camera``
            (the message lists the cameras it has).
    """

    def __init__(self, sim: Any, spec: FrameSpec):
        import mujoco

        model, data = getattr(sim, "model", None), getattr(sim, "data", None)
        if not isinstance(model, mujoco.MjModel):
            raise ValueError(f"frames need a MuJoCo simulator; {type(sim).__name__} has none")
        if spec.camera is not None:
            names = [model.camera(i).name for i in range(model.ncam)]
            if spec.camera not in names:
                raise ValueError(f"camera {spec.camera!r} does not exist in {type(sim).__name__}; "
                                 f"cameras: {', '.join(names) or '(none)'}")
        self.spec = spec
        self._data = data
        self._model = render_model(model, spec.height, spec.width, spec.max_faces_per_mesh)
        self._renderer = mujoco.Renderer(self._model, spec.height, spec.width)
        self._flags = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                       mujoco.mjtRndFlag.mjRND_SKYBOX)

    def render(self) -> np.ndarray:
        """The current frame, ``(H, W, 3)`` uint8 (a new array)."""
        if self.spec.camera is None:
            self._renderer.update_scene(self._data)
        else:
            self._renderer.update_scene(self._data, camera=self.spec.camera)
        for flag in self._flags:  # reset by every update_scene; each costs more than the frame itself
            self._renderer.scene.flags[flag] = False
        image = self._renderer.render()
        return np.ascontiguousarray(image[::-1, ::-1]) if self.spec.flip else image.copy()

    def close(self) -> None:
        """Free the GL resources (our context current while freeing them).

        ``mujoco.Renderer.close`` destroys the GL context before the MuJoCo render context,
        so the latter's GL objects are deleted in whatever context is current: with
        several renderers in one process that corrupts another renderer's frames.
        """
        renderer = self.__dict__.pop("_renderer", None)
        if renderer is None:
            return
        if renderer._gl_context is not None:
            renderer._gl_context.make_current()
        if renderer._mjr_context is not None:
            renderer._mjr_context.free()
            renderer._mjr_context = None
        if renderer._gl_context is not None:
            renderer._gl_context.free()
            renderer._gl_context = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: GL may already be gone
            pass
