r"""Generates scripted offline datasets.

  python -m launch.collect --config=configs/metaworld.py:drawer-open --out=data/metaworld
  python -m launch.collect --config=configs/metaworld.py --tasks=paper --out=data/metaworld
  python -m launch.collect --config=configs/kitchen.py:mixed --out=data/kitchen

Each task's episodes go to `<out>/<task>/` with `manifest.json` (environment
settings, seed, episodes, transitions, average return, success rate) and
`contact_sheet.png` (first/middle/last frames; green border = success).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/metaworld.py', 'Config file[:task,preset].')
_OUT = flags.DEFINE_string('out', None, 'Output directory; each task gets a subdirectory.', required=True)
_TASKS = flags.DEFINE_list(
  'tasks',
  None,
  "Tasks to collect (overrides the config's task); a suite's "
  'task group expands ("paper" = the paper\'s ten MetaWorld tasks).',
)
_EPISODES = flags.DEFINE_integer('episodes', None, 'Episodes per task (default: config.data.num_episodes).')


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)  # PyOpenGL's import notices
  from moto_jax.errors import UserError
  from moto_jax.training import offline_data

  try:
    offline_data.collect_tasks(
      _CONFIG.value, _OUT.value, _TASKS.value, _EPISODES.value, log=lambda s: print(s, flush=True)
    )
  except UserError as e:  # a bad field or task name: one line, nothing collected
    sys.stderr.write(f'FATAL {type(e).__name__}: {e}\n')
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
