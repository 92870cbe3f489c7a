"""Offscreen MuJoCo rendering for small camera images.

`env.render()` as shipped by MetaWorld and gymnasium-robotics renders with MSAA,
shadows and reflections into a large offscreen buffer; at 64x64 almost all of
that cost is wasted. `FastRenderer` renders through `mujoco.Renderer` with those
features switched off (about 12x cheaper for MetaWorld). The settings change the
picture, so every dataset records them and online rollouts must use the same.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

RENDER_QUALITIES = ('fast', 'shipped')


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
  """

  def __init__(
    self,
    model: mujoco.MjModel,
    data: mujoco.MjData,
    size: int,
    camera: str | FreeCamera,
    quality: str = 'fast',
    flip: bool = False,
  ):
    if quality not in RENDER_QUALITIES:
      raise ValueError(f'render_quality={quality!r}; expected one of {RENDER_QUALITIES}')
    self._data = data
    self._flip = flip
    self.quality = quality
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
    return dict(quality=self.quality, camera=cam_desc, flip=self._flip, size=int(self._renderer.height))

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
