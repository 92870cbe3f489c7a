"""Any Gymnasium environment that renders, as a suite (`configs/gym.py:<env id>`), on a small
environment registered here: pixels from render(), actions mapped to its Box, success from an info
key, and the main job on it end to end."""

import gymnasium as gym
import numpy as np
import pytest

from configs import gym as gym_config
from moto_jax import suites
from moto_jax.suites.gym import GymPixelEnv

GOAL = np.array([0.6, 0.6])


class Dot(gym.Env):
  """A dot on the unit square moved by 0.05 x action (Box [-2, 2]^2), drawn at 96 x 96."""

  metadata = {'render_modes': ['rgb_array'], 'render_fps': 10}

  def __init__(self, render_mode=None):
    self.render_mode = render_mode
    self.action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float64)
    self.pos = None

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.pos = self.np_random.uniform(0.1, 0.4, 2)
    return self.pos.copy(), {'is_success': False}

  def step(self, action):
    self.pos = np.clip(self.pos + 0.05 * np.asarray(action, np.float64), 0.0, 1.0)
    success = bool(np.linalg.norm(self.pos - GOAL) < 0.15)
    return self.pos.copy(), float(success), False, False, {'is_success': success}

  def render(self):
    image = np.zeros((96, 96, 3), np.uint8)
    p = np.clip((self.pos * 96).astype(int), 4, 91)
    image[p[0] - 4 : p[0] + 4, p[1] - 4 : p[1] + 4] = 255
    return image


gym.register('MotoTestDot-v0', entry_point=Dot)


def config(**env):
  c = gym_config.get_config('MotoTestDot-v0,debug').unlock()
  c.env.success_key = 'is_success'
  c.env.update(env)
  return c


def test_unknown_id_names_close_ones():
  with pytest.raises(ValueError, match=r"Unknown Gymnasium environment 'MotoTestDott-v0'.*close: MotoTestDot-v0"):
    GymPixelEnv('MotoTestDott-v0')


def test_pixels_actions_success_and_time_limit():
  env = suites.make_env(config(action_repeat=2, episode_length=4))
  try:
    obs, info = env.reset(seed=0)
    assert obs['image'].shape == (64, 64, 3) and obs['image'].dtype == np.uint8 and obs['image'].max() == 255
    assert env.action_space.shape == (2,) and env.action_space.low.min() == -1.0
    start = env._env.unwrapped.pos.copy()
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, -0.5]))  # -> [2, -1] in the Box, twice
    np.testing.assert_allclose(env._env.unwrapped.pos, np.clip(start + 2 * 0.05 * np.array([2.0, -1.0]), 0, 1))
    assert not terminated and not truncated and info['success'] == 0.0 and reward == 0.0
    env._env.unwrapped.pos = GOAL.copy()
    _, reward, _, _, info = env.step(np.zeros(2))
    assert info['success'] == 1.0 and reward == 2.0  # two repeats inside the goal
    _, _, _, truncated, _ = env.step(np.zeros(2))
    assert not truncated
    _, _, _, truncated, _ = env.step(np.zeros(2))
    assert truncated  # 4 agent steps
    first = env.reset(seed=5)[0]['image']
    assert np.array_equal(first, env.reset(seed=5)[0]['image'])  # seeded resets
    assert env.settings()['task'] == 'MotoTestDot-v0' and env.settings()['success_key'] == 'is_success'
  finally:
    env.close()
  gym.register('MotoTestDiscrete-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')  # Discrete actions
  with pytest.raises(ValueError, match='needs a Box with finite bounds'):
    GymPixelEnv('MotoTestDiscrete-v0')


@pytest.mark.slow
@pytest.mark.integration
def test_main_job_on_a_gym_environment(tmp_path):
  """Random offline episodes (the suite has no expert), offline training, online episodes and evaluations."""
  from moto_jax.data import manifest as manifest_lib
  from moto_jax.training import loop, offline_data

  c = config()
  c.data.cache_dir = str(tmp_path / 'data')
  c.train.env_steps = 20
  summary = loop.train_and_evaluate(c.lock(), str(tmp_path / 'run'), log=lambda *a: None)
  assert (summary['phase'], summary['env_steps'], summary['episodes']) == ('done', 20, 2)
  assert 0.0 <= summary['final_success_rate'] <= 1.0 and summary['eval_episodes'] == 1
  manifest = manifest_lib.read_manifest(offline_data.cache_path(c))
  assert manifest['collector']['kind'] == 'uniform random actions'
  assert summary['behaviour_prior']['rule'] == "info['is_success'] true at some step"
  assert not suites.get('gym').has_expert()  # random data, but no expert for the bound
