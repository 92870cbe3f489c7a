"""MetaWorld v3 tasks from pixels, as the paper uses them.

64x64 RGB from one fixed camera, no proprioception, sparse reward `1.0 * success`,
action repeat 2, 200 agent steps per episode, random object and goal positions at
every reset. The wrapper owns all seeding: `reset(seed=s)` fixes the episode's start
exactly (object/goal vector, hand start), whatever happened before.

`reward='dense'` (beyond the paper) pays MetaWorld's shaped reward instead, divided by 10 so that
a step pays at most 1 (the success step's 10), averaged over the repeated steps; `info['success']`,
and so the behaviour prior and the success rate, is the same either way.
"""

from __future__ import annotations

import gymnasium as gym
import metaworld
import numpy as np

from moto_jax.suites.metaworld import REWARDS
from moto_jax.suites.rendering import FastRenderer, FreeCamera

TASKS = tuple(sorted(name[: -len('-v3')] for name in metaworld.env_dict.ALL_V3_ENVIRONMENTS))

# The free camera of the authors' MetaWorld wrapper.
AUTHORS_CAMERA = FreeCamera(distance=0.75, azimuth=15.0, elevation=-22.5, lookat=(-0.15, 0.65, 0.25))
# Hand start of the authors' wrapper (plus `hand_init_noise * N(0, I)`).
AUTHORS_HAND_INIT = np.array([0.1, 0.5, 0.30])
SETTLE_STEPS = 10  # zero-action simulator steps after every reset
MAX_PATH_LENGTH = 500  # MetaWorld's simulator steps per episode, the settle steps included
DENSE_MAX = 10.0  # MetaWorld v3's shaped reward lies in [0, 10]


def check_task(task: str) -> str:
  """Returns the task name without a `-v3` suffix, or raises listing the valid names."""
  name = task[:-3] if task.endswith('-v3') else task
  if name not in TASKS:
    raise ValueError(f'Unknown MetaWorld task {task!r}. Valid tasks ({len(TASKS)}): {", ".join(TASKS)}')
  return name


class MetaWorldEnv(gym.Env):
  """A MetaWorld v3 task with image observations `{'image': uint8 [S, S, 3]}`.

  `info` carries `success` (0/1 at this step), `state` (the 39-d simulator observation,
  for scripted policies only; agents never see it).
  """

  metadata = {'render_modes': ['rgb_array']}

  def __init__(
    self,
    task: str,
    seed: int = 0,
    image_size: int = 64,
    camera: str = 'authors',
    action_repeat: int = 2,
    episode_length: int = 200,
    render_quality: str = 'fast',
    hand_init_noise: float = 0.02,
    reward: str = 'sparse',
  ):
    self.task = check_task(task)
    if reward not in REWARDS:
      raise ValueError(f'reward={reward!r}; expected one of {REWARDS}')
    self.reward = reward
    self.action_repeat = int(action_repeat)
    self.episode_length = int(episode_length)
    self.hand_init_noise = float(hand_init_noise)
    if self.action_repeat * self.episode_length + SETTLE_STEPS > MAX_PATH_LENGTH:
      raise ValueError(
        f'action_repeat * episode_length = {self.action_repeat * self.episode_length} '
        f"exceeds MetaWorld's {MAX_PATH_LENGTH}-step limit (minus {SETTLE_STEPS} settle steps)"
      )
    cls = metaworld.env_dict.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f'{self.task}-v3-goal-observable']
    self._env = cls(seed=seed)
    self._env._freeze_rand_vec = False  # pylint: disable=protected-access
    self._env.seeded_rand_vec = True
    self._default_hand_init = np.array(self._env.hand_init_pos, dtype=np.float64)
    if camera == 'authors':
      cam, flip = AUTHORS_CAMERA, False
    else:
      cam, flip = camera, camera.startswith('corner')
    self.renderer = FastRenderer(self._env.model, self._env.data, image_size, cam, quality=render_quality, flip=flip)
    self._rng = np.random.default_rng(seed)
    self._steps = 0
    self._state = None
    self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    self.observation_space = gym.spaces.Dict({'image': gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)})

  def settings(self) -> dict:
    """Everything that determines what the agent sees; recorded in every dataset."""
    out = dict(
      domain='metaworld',
      task=self.task,
      action_repeat=self.action_repeat,
      episode_length=self.episode_length,
      hand_init_noise=self.hand_init_noise,
      render=self.renderer.settings(),
    )
    if self.reward != 'sparse':  # datasets made before the choice existed keep their settings
      out['reward'] = self.reward
    return out

  def _obs(self):
    return {'image': self.renderer.render()}

  def reset(self, *, seed: int | None = None, options=None):
    if seed is not None:
      self._rng = np.random.default_rng(seed)
    env = self._env
    env.seed(int(self._rng.integers(2**31 - 1)))  # object and goal positions
    env.hand_init_pos = AUTHORS_HAND_INIT + self.hand_init_noise * self._rng.standard_normal(3)
    env.reset()
    zero = np.zeros(4, np.float32)
    for _ in range(SETTLE_STEPS):
      state, *_ = env.step(zero)
    self._state = state
    self._steps = 0
    return self._obs(), {'success': 0.0, 'state': state}

  def step(self, action):
    if self._state is None:
      raise RuntimeError('step() called before reset()')
    action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
    if action.shape != (4,):
      raise ValueError(f'action has shape {action.shape}; expected (4,)')
    shaped = 0.0
    for _ in range(self.action_repeat):
      state, r, _, _, info = self._env.step(action)
      shaped += float(r)
    self._state = state
    self._steps += 1
    success = float(info['success'])
    truncated = self._steps >= self.episode_length
    reward = success if self.reward == 'sparse' else shaped / (self.action_repeat * DENSE_MAX)
    return self._obs(), reward, False, truncated, {'success': success, 'state': state}

  def render(self):
    return self.renderer.render()

  def close(self):
    self.renderer.close()
    self._env.close()
