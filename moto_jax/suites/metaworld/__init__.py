"""MetaWorld v3 from pixels: the tasks, the environment (`env.py`) and the experts of
`metaworld.policies` as the scripted policy."""

from __future__ import annotations

import warnings

import numpy as np

from moto_jax.suites.base import Suite, require

# The paper's ten MetaWorld tasks (`launch.collect --tasks=paper`).
PAPER_TASKS = (
  'assembly',
  'bin-picking',
  'box-close',
  'coffee-push',
  'disassemble',
  'door-open',
  'drawer-open',
  'hammer',
  'plate-slide',
  'window-open',
)

# `env.reward`: `1.0 * success` (the paper), or MetaWorld's shaped reward / 10 (env.py).
REWARDS = ('sparse', 'dense')


class MetaWorldSuite(Suite):
  name = 'metaworld'
  task_groups = {'paper': PAPER_TASKS}

  def check_task(self, task: str) -> str:
    from moto_jax.suites.metaworld.env import check_task

    return check_task(task)

  def check_config(self, config) -> None:
    from moto_jax.suites.metaworld.env import MAX_PATH_LENGTH, SETTLE_STEPS  # pylint: disable=g-import-not-at-top

    env = config.env
    require(env.reward in REWARDS, 'env.reward', env.reward, 'expected one of ' + ', '.join(map(repr, REWARDS)))
    steps = env.action_repeat * env.episode_length
    require(
      steps + SETTLE_STEPS <= MAX_PATH_LENGTH,
      'env.episode_length',
      env.episode_length,
      f"with env.action_repeat={env.action_repeat} that is {steps} simulator steps; MetaWorld's limit "
      f'is {MAX_PATH_LENGTH} minus {SETTLE_STEPS} settle steps',
    )
    require(config.data.action_noise >= 0, 'data.action_noise', config.data.action_noise, 'expected >= 0')

  def make_env(self, config, seed: int):
    from moto_jax.suites.metaworld.env import MetaWorldEnv

    return MetaWorldEnv(config.task, seed=seed, **config.env)

  def action_dim(self, config) -> int:
    return 4  # end-effector xyz and gripper, every task (MetaWorldEnv.action_space)

  def scripted_policy(self, env, config, rng: np.random.Generator, action_noise: float | None = None):
    """The MetaWorld expert for the task, reading the simulator state in `info['state']`."""
    from metaworld.policies import ENV_POLICY_MAP

    warnings.filterwarnings('ignore', message='Constant\\(s\\) may be too high')
    expert = ENV_POLICY_MAP[f'{env.task}-v3']()
    noise = config.data.action_noise if action_noise is None else action_noise

    def policy_fn(obs, info):
      del obs
      action = expert.get_action(info['state'])
      if noise > 0:
        action = action + noise * rng.standard_normal(action.shape)
      return action

    return policy_fn

  def collector_info(self, config) -> dict:
    return dict(kind='metaworld.policies', seed=config.seed, action_noise=config.data.action_noise)


SUITE = MetaWorldSuite()
