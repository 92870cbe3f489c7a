"""A toy third suite, built only against `moto_jax.suites.base.Suite` (tests/test_suites.py).

`reach`: a dot on a plane, moved by a 2-d action, must reach a goal square drawn in the image.
Reward 1 at every step the dot is inside the goal (`info['success']`).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from moto_jax.suites.base import Suite, require

GOAL = np.array([0.6, 0.6])
RADIUS = 0.15


class ReachEnv(gym.Env):
  def __init__(
    self,
    task: str,
    seed: int = 0,
    image_size: int = 64,
    action_repeat: int = 1,
    episode_length: int = 10,
    render_quality: str = 'fast',
  ):
    del render_quality
    self.task, self.size = task, image_size
    self.action_repeat, self.episode_length = action_repeat, episode_length
    self._rng = np.random.default_rng(seed)
    self._pos, self._steps = None, 0
    self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.observation_space = gym.spaces.Dict({'image': gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)})

  def settings(self) -> dict:
    return dict(domain='toy', task=self.task, episode_length=self.episode_length, size=self.size)

  def _obs(self):
    image = np.zeros((self.size, self.size, 3), np.uint8)
    g = (GOAL * self.size).astype(int)
    image[g[0] - 4 : g[0] + 4, g[1] - 4 : g[1] + 4, 1] = 255
    p = np.clip((self._pos * self.size).astype(int), 2, self.size - 3)
    image[p[0] - 2 : p[0] + 3, p[1] - 2 : p[1] + 3, 0] = 255
    return {'image': image}

  def _info(self):
    return {'success': float(np.linalg.norm(self._pos - GOAL) < RADIUS), 'pos': self._pos.copy()}

  def reset(self, *, seed=None, options=None):
    if seed is not None:
      self._rng = np.random.default_rng(seed)
    self._pos, self._steps = self._rng.uniform(0.1, 0.4, 2), 0
    return self._obs(), self._info()

  def step(self, action):
    for _ in range(self.action_repeat):
      self._pos = np.clip(self._pos + 0.1 * np.clip(action, -1, 1), 0.0, 1.0)
    self._steps += 1
    info = self._info()
    return self._obs(), info['success'], False, self._steps >= self.episode_length, info

  def close(self):
    pass


class ToySuite(Suite):
  name = 'toy'

  def check_task(self, task: str) -> str:
    if task != 'reach':
      raise ValueError(f'Unknown toy task {task!r}. Valid tasks: reach')
    return task

  def check_config(self, config) -> None:
    require(config.env.episode_length <= 50, 'env.episode_length', config.env.episode_length, 'expected <= 50')

  def make_env(self, config, seed: int):
    return ReachEnv(config.task, seed=seed, **config.env)

  def scripted_policy(self, env, config, rng, action_noise=None):
    noise = config.data.action_noise if action_noise is None else action_noise

    def policy_fn(obs, info):
      del obs
      return np.clip((GOAL - info['pos']) / 0.1, -1, 1) + noise * rng.standard_normal(2)

    return policy_fn


SUITE = ToySuite()


def config(preset: str = 'debug'):
  """The toy suite's config file would be these lines (`configs/<suite>.py`)."""
  from configs import common

  return common.assemble(
    'toy', 'reach', preset, env=dict(action_repeat=1, episode_length=10), data=dict(num_episodes=3, action_noise=0.0)
  )
