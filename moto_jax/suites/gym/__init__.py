"""Any Gymnasium environment that renders, as a suite: `--config=configs/gym.py:<env id>`.

Pixels come from `render()` (the environment made with `render_mode='rgb_array'`), resized to
`config.env.image_size`; actions in [-1, 1] are mapped to the environment's Box bounds; success is
`info[config.env.success_key]` (default 'success'; gymnasium-robotics uses 'is_success'). There is no
scripted expert: the offline dataset a run generates is uniformly random actions (a start for online
fine-tuning, without the behaviour prior unless a random episode succeeds), so bring recorded
episodes with `--config.data.dir=DIR` where there are any.
"""

from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np

from moto_jax.suites.base import Suite


def check_task(task: str) -> str:
  """`task` if it is a registered Gymnasium id; otherwise ValueError naming the closest ones."""
  if task in gym.registry:
    return task
  close = difflib.get_close_matches(task, list(gym.registry), n=5, cutoff=0.5)
  raise ValueError(
    f'Unknown Gymnasium environment {task!r} (config.task)'
    + (f'; close: {", ".join(close)}' if close else '')
    + '. Register it with gymnasium.register, or import the package that does, before the run.'
  )


class GymPixelEnv:
  """A Gymnasium environment as this library's pixel environment (`moto_jax.suites.base.Suite`)."""

  def __init__(
    self,
    task: str,
    seed: int = 0,
    image_size: int = 64,
    action_repeat: int = 1,
    episode_length: int = 200,
    success_key: str = 'success',
    render_quality: str = 'fast',
  ):
    del render_quality  # the environment renders as it does
    self.task = check_task(task)
    self.image_size, self.success_key = int(image_size), success_key
    self.action_repeat, self.episode_length = int(action_repeat), int(episode_length)
    if self.action_repeat < 1 or self.episode_length < 1:
      raise ValueError(f'action_repeat={action_repeat} and episode_length={episode_length} must be >= 1')
    self._env = gym.make(task, render_mode='rgb_array')
    space = self._env.action_space
    if not isinstance(space, gym.spaces.Box) or not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
      self._env.close()
      raise ValueError(f'{task}: the action space is {space}; this suite needs a Box with finite bounds')
    self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
    self.action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
    self.observation_space = gym.spaces.Dict(
      {'image': gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)}
    )
    self._rng = np.random.default_rng(seed)
    self._steps = None

  def settings(self) -> dict:
    return dict(
      domain='gym',
      task=self.task,
      image_size=self.image_size,
      action_repeat=self.action_repeat,
      episode_length=self.episode_length,
      success_key=self.success_key,
      gymnasium=gym.__version__,
    )

  def _obs(self) -> dict:
    from PIL import Image

    frame = np.asarray(self._env.render())
    if frame.ndim != 3 or frame.shape[-1] < 3:
      raise ValueError(f'{self.task}: render() gave an array of shape {frame.shape}; expected [H, W, 3]')
    frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
    if frame.shape[:2] != (self.image_size, self.image_size):
      frame = np.asarray(Image.fromarray(frame).resize((self.image_size, self.image_size), Image.BILINEAR))
    return {'image': frame}

  def _success(self, info: dict) -> float:
    return float(bool(np.any(info.get(self.success_key, 0.0))))

  def reset(self, *, seed: int | None = None, options=None):
    if seed is not None:
      self._rng = np.random.default_rng(seed)
    _, info = self._env.reset(seed=int(self._rng.integers(2**31 - 1)), options=options)
    self._steps = 0
    return self._obs(), {**info, 'success': self._success(info)}

  def step(self, action):
    if self._steps is None:
      raise RuntimeError('step() called before reset()')
    action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
    reward, terminated, truncated, info = 0.0, False, False, {}
    for _ in range(self.action_repeat):
      _, r, terminated, truncated, info = self._env.step(scaled.astype(self._env.action_space.dtype))
      reward += float(r)
      if terminated or truncated:
        break
    self._steps += 1
    truncated = bool(truncated) or self._steps >= self.episode_length
    return self._obs(), reward, bool(terminated), truncated, {**info, 'success': self._success(info)}

  def render(self):
    return self._obs()['image']

  def close(self):
    self._env.close()


class GymSuite(Suite):
  name = 'gym'

  def check_task(self, task: str) -> str:
    return check_task(task)

  def make_env(self, config, seed: int):
    return GymPixelEnv(config.task, seed=seed, **config.env)

  def prior_rule(self, config) -> str:
    return f'info[{config.env.success_key!r}] true at some step'

  def collector_info(self, config) -> dict:
    return dict(kind='uniform random actions', seed=config.seed)

  def collection_policy(self, env, config, rng: np.random.Generator):
    """Uniformly random actions: the suite has no expert (`has_expert()` is False)."""
    del config
    return lambda obs, info: rng.uniform(-1.0, 1.0, env.action_space.shape)


SUITE = GymSuite()
