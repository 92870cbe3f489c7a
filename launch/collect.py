r"""Generates scripted offline datasets.

  python -m launch.collect --config=configs/metaworld.py:drawer-open --out=data/metaworld
  python -m launch.collect --config=configs/metaworld.py --tasks=paper --out=data/metaworld

Each task's episodes go to `<out>/<task>/` with `manifest.json` (environment
settings, seed, episodes, transitions, average return, success rate) and
`contact_sheet.png` (first/middle/last frames; green border = success).
"""
import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/metaworld.py', 'Config file[:task,preset].')
_OUT = flags.DEFINE_string('out', None, 'Output directory; each task gets a subdirectory.', required=True)
_TASKS = flags.DEFINE_list('tasks', None, 'Tasks to collect (overrides the config\'s task); '
                           '"paper" = the paper\'s ten MetaWorld tasks.')
_EPISODES = flags.DEFINE_integer('episodes', None, 'Episodes per task (default: config.data.num_episodes).')


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  from moto_jax.data import collect as collect_lib
  config = _CONFIG.value
  tasks = _TASKS.value or [config.task]
  if config.domain == 'metaworld':
    from configs.metaworld import PAPER_TASKS
    from moto_jax.envs.metaworld_env import check_task
    if tasks == ['paper']:
      tasks = list(PAPER_TASKS)
    tasks = [check_task(t) for t in tasks]   # fail on a bad name before collecting anything
    summary = {}
    for task in tasks:
      task_config = config.copy_and_resolve_references()
      task_config.unlock()
      task_config.task = task
      out_dir = os.path.join(_OUT.value, task)
      m = collect_lib.collect_metaworld(task_config, out_dir, num_episodes=_EPISODES.value)
      summary[task] = {k: m[k] for k in ('episodes', 'transitions', 'average_return', 'success_rate')}
      print(f'{task}: {json.dumps(summary[task])} -> {out_dir}', flush=True)
  elif config.domain == 'kitchen':
    from moto_jax.data import kitchen_collect
    kitchen_collect.main(config, _OUT.value, num_episodes=_EPISODES.value)
  else:
    raise ValueError(f'config.domain={config.domain!r} has no collector')


if __name__ == '__main__':
  app.run(main)
