"""Franka Kitchen from pixels: the tasks and the environment (`env.py`), the scripted arm
controller (`script.py`) and the play-data generator (`collect.py`)."""

from __future__ import annotations

from moto_jax.suites.base import Suite, require

# Paper task -> its four target tasks, in the fixed order of `info['tasks_done']` (env.py).
TARGET_TASKS = {
  'mixed': ('microwave', 'kettle', 'light switch', 'slide cabinet'),
  'partial': ('microwave', 'kettle', 'bottom burner', 'light switch'),
}

# The order in which the noise-free scripted expert runs them (`KitchenSuite.scripted_policy`),
# measured to finish all four inside the 280-step episode: from one start, 'mixed' at step 273 and
# 'partial' at step 275. 'partial' runs the three tasks its data covers first and the light switch
# last (App. A.1 conditions on the first three). Some orders take longer, or make the script miss a
# task (the bottom burner after the light switch), so the order matters.
EXPERT_ORDER = {
  'mixed': ('microwave', 'light switch', 'slide cabinet', 'kettle'),
  'partial': ('bottom burner', 'kettle', 'microwave', 'light switch'),
}

# `data.task_order`: the play data's sub-tasks in any order, or sorted into one (collect.py).
TASK_ORDERS = ('random', 'fixed')


def check_task(task: str) -> str:
  if task not in TARGET_TASKS:
    raise ValueError(
      f'Unknown Franka Kitchen task {task!r}. Valid tasks: '
      + '; '.join(f'{k!r} ({", ".join(v)})' for k, v in TARGET_TASKS.items())
    )
  return task


class KitchenSuite(Suite):
  name = 'kitchen'
  summary_keys = (
    'episodes',
    'transitions',
    'average_return',
    'success_rate',
    'bc_weight_share',
    'average_target_tasks_completed',
    'episodes_per_minute',
  )

  def check_task(self, task: str) -> str:
    return check_task(task)

  def check_config(self, config) -> None:
    from moto_jax.suites.kitchen.env import CAMERAS  # pylint: disable=g-import-not-at-top

    env, data = config.env, config.data
    require(env.camera in CAMERAS, 'env.camera', env.camera, 'expected one of ' + ', '.join(map(repr, CAMERAS)))
    require(env.mesh_faces >= 0, 'env.mesh_faces', env.mesh_faces, 'expected >= 0 (0 = the meshes as shipped)')
    targets = TARGET_TASKS[config.task]
    unknown = [t for t in data.bc_tasks if t not in targets]
    require(
      not unknown,
      'data.bc_tasks',
      tuple(data.bc_tasks),
      f'{unknown} are not target tasks of {config.task!r}: {targets}',
    )
    require(
      data.task_order in TASK_ORDERS,
      'data.task_order',
      data.task_order,
      f'expected one of {", ".join(map(repr, TASK_ORDERS))}',
    )
    for field in ('fail_prob', 'full_share'):
      require(0.0 <= data[field] <= 1.0, f'data.{field}', data[field], 'expected a value in [0, 1]')
    for field in ('action_noise', 'waypoint_noise'):
      require(data[field] >= 0, f'data.{field}', data[field], 'expected >= 0')
    require(data.workers >= 1, 'data.workers', data.workers, 'expected >= 1')

  def step_weights(self, config):
    """With `data.bc_segments`, segment cloning (`collect.segment_weights`): the steps that lead to
    each completed target task carry the prior, whatever the rest of the episode does."""
    if not config.data.get('bc_segments', False):
      return None
    from moto_jax.suites.kitchen.collect import segment_weights  # pylint: disable=g-import-not-at-top

    targets = TARGET_TASKS[config.task]
    return lambda e: segment_weights(e['tasks_done'], targets, tuple(config.data.bc_tasks))

  def make_env(self, config, seed: int):
    from moto_jax.suites.kitchen.env import KitchenEnv

    return KitchenEnv(config.task, seed=seed, **config.env)

  def action_dim(self, config) -> int:
    return 9  # 7 arm joints and 2 gripper fingers (KitchenEnv.action_space)

  def prior_rule(self, config) -> str:
    tasks = list(config.data.bc_tasks) or list(TARGET_TASKS[config.task])
    if config.data.get('bc_segments', False):
      return f'segments: the steps leading to the completion of any of the target tasks {", ".join(tasks)}'
    return f'the target tasks {", ".join(tasks)} in their goal state together at some step'

  def collect(self, config, out_dir: str, num_episodes: int | None = None, progress: bool = True) -> dict:
    """Scripted play data in `config.data.workers` processes (`collect.collect_kitchen`)."""
    from moto_jax.suites.kitchen.collect import collect_kitchen

    return collect_kitchen(config, out_dir, num_episodes=num_episodes, progress=progress)

  def scripted_policy(self, env, config, rng, action_noise: float | None = None):
    """The scripted controller running the task's four target tasks (in `EXPERT_ORDER`), then holding still."""
    from moto_jax.suites.kitchen.script import PlayScript

    noise = config.data.action_noise if action_noise is None else action_noise
    return PlayScript(env, EXPERT_ORDER[config.task], rng, action_noise=noise)


SUITE = KitchenSuite()
