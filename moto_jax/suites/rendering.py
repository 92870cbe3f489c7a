"""Offscreen MuJoCo rendering for small camera images.

`env.render()` as shipped by MetaWorld and gymnasium-robotics renders with MSAA,
shadows and reflections into a large offscreen buffer; at 64x64 almost all of
that cost is wasted. `FastRenderer` renders through `mujoco.Renderer` with those
features switched off (about 12x cheaper for MetaWorld). With `mesh_faces`, it
renders a copy of the model whose larger meshes are decimated to at most that
many faces (quadric edge collapse, `fast_simplification`): Franka Kitchen's arm
carries 134k faces that at 64x64 cost half of every frame. The physics keeps the
original model. The settings change the picture, so every dataset records them
and online rollouts must use the same.
"""

from __future__ import annotations

import copy
import dataclasses

import mujoco
import numpy as np

RENDER_QUALITIES = ('fast', 'shipped')


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Area-weighted vertex normals [V, 3] of a triangle mesh (unit length)."""
  face_normals = np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])
  normals = np.zeros_like(points)
  for k in range(3):
    np.add.at(normals, faces[:, k], face_normals)
  return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def decimated(model: mujoco.MjModel, max_faces: int) -> tuple[mujoco.MjModel, dict]:
  """A copy of `model` for rendering whose untextured meshes of more than `max_faces` faces are
  decimated to at most `max_faces` (same mesh slots, fewer vertices and faces used; smooth
  normals recomputed). Returns (copy, {mesh name: (faces before, after)}). Geom positions come
  from the simulation's data as usual; only the drawn shapes change."""
  import fast_simplification  # pylint: disable=g-import-not-at-top

  out = copy.deepcopy(model)
  changed = {}
  for mid in range(model.nmesh):
    nf = int(model.mesh_facenum[mid])
    if nf <= max_faces or model.mesh_texcoordadr[mid] >= 0:
      continue
    va, vn, fa = model.mesh_vertadr[mid], model.mesh_vertnum[mid], model.mesh_faceadr[mid]
    na, nn = model.mesh_normaladr[mid], model.mesh_normalnum[mid]
    points, faces = fast_simplification.simplify(
      model.mesh_vert[va : va + vn].astype(np.float64),
      model.mesh_face[fa : fa + nf].astype(np.int32),
      target_count=max_faces,
    )
    if len(faces) == 0 or len(faces) > max_faces or len(points) > min(vn, nn):
      continue  # the simplifier could not reach the target within the mesh's slots: keep it
    out.mesh_vert[va : va + len(points)] = points
    out.mesh_vertnum[mid] = len(points)
    out.mesh_normal[na : na + len(points)] = _vertex_normals(points, faces)
    out.mesh_normalnum[mid] = len(points)
    out.mesh_face[fa : fa + len(faces)] = faces
    out.mesh_facenormal[fa : fa + len(faces)] = faces
    out.mesh_facenum[mid] = len(faces)
    out.mesh_graphadr[mid] = -1  # its convex hull indexes the old vertices: none drawn for this copy
    changed[model.mesh(mid).name or str(mid)] = (nf, len(faces))
  return out, changed


@dataclasses.dataclass(frozen=True)
class FreeCamera:
  """A free (orbiting) camera: distance, azimuth and elevation in degrees, lookat point."""

  distance: float
  azimuth: float
  elevation: float
  lookat: tuple[float, float, float]


class FastRenderer:
  """Renders `size x size` RGB frames (uint8) of a MuJoCo model from one fixed camera.

  Args:
    model, data: the simulation to render.
    size: output height and width in pixels.
    camera: a named model camera (str) or a `FreeCamera`.
    quality: 'fast' (no MSAA, shadows or reflections, small offscreen buffer) or
      'shipped' (the model's own visual settings).
    flip: rotate the image by 180 degrees (MetaWorld's `corner*` cameras render upside down).
    mesh_faces: > 0 draws meshes of more faces decimated to this many (`decimated`); 0 as shipped.
  """

  def __init__(
    self,
    model: mujoco.MjModel,
    data: mujoco.MjData,
    size: int,
    camera: str | FreeCamera,
    quality: str = 'fast',
    flip: bool = False,
    mesh_faces: int = 0,
  ):
    if quality not in RENDER_QUALITIES:
      raise ValueError(f'render_quality={quality!r}; expected one of {RENDER_QUALITIES}')
    if int(mesh_faces) < 0:
      raise ValueError(f'mesh_faces={mesh_faces}; expected 0 (meshes as shipped) or a face count > 0')
    self._data = data
    self._flip = flip
    self.quality = quality
    self.mesh_faces = int(mesh_faces)
    self.decimated = {}
    if self.mesh_faces:
      model, self.decimated = decimated(model, self.mesh_faces)
    if quality == 'fast':
      # Must be set before the renderer (and its GL context) is created.
      model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(size, 1) if quality == 'fast' else max(model.vis.global_.offwidth, size)
    model.vis.global_.offheight = max(size, 1) if quality == 'fast' else max(model.vis.global_.offheight, size)
    self._renderer = mujoco.Renderer(model, height=size, width=size)
    if quality == 'fast':
      self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
      self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    if isinstance(camera, FreeCamera):
      cam = mujoco.MjvCamera()
      cam.type = mujoco.mjtCamera.mjCAMERA_FREE
      cam.distance, cam.azimuth, cam.elevation = camera.distance, camera.azimuth, camera.elevation
      cam.lookat[:] = camera.lookat
      self._camera = cam
    else:
      if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
        names = [model.camera(i).name for i in range(model.ncam)]
        raise ValueError(f'camera={camera!r} is not in the model; cameras: {names}')
      self._camera = camera

  def settings(self) -> dict:
    cam = self._camera
    cam_desc = (
      cam
      if isinstance(cam, str)
      else dict(
        distance=float(cam.distance),
        azimuth=float(cam.azimuth),
        elevation=float(cam.elevation),
        lookat=[float(x) for x in cam.lookat],
      )
    )
    out = dict(quality=self.quality, camera=cam_desc, flip=self._flip, size=int(self._renderer.height))
    if self.mesh_faces:  # absent when 0, as in datasets made before the setting existed
      out['mesh_faces'] = self.mesh_faces
    return out

  def render(self) -> np.ndarray:
    """Returns the current frame, uint8 [size, size, 3], upright."""
    if self._renderer is None:
      raise RuntimeError('render() called on a closed renderer')
    self._renderer.update_scene(self._data, camera=self._camera)
    img = self._renderer.render()
    if self._flip:
      img = img[::-1, ::-1]
    return np.ascontiguousarray(img)

  def close(self) -> None:
    if self._renderer is not None:
      self._renderer.close()
      self._renderer = None

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass
