r"""MOTO: offline pre-training, then online fine-tuning, in one resumable job.

  python -m launch.main --config=configs/metaworld.py:drawer-open,small --workdir=runs/drawer-open

Re-running the same command on the same workdir resumes from its last checkpoint.
Override any config field with `--config.<field>=<value>` (e.g. `--config.seed=1`).
"""
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:task,preset].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, episodes, logs and plots.')
_ALLOW_CHANGE = flags.DEFINE_bool('allow_config_change', False,
                                  'Resume a workdir whose recorded config differs from this one.')
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() (pods, clusters).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  import jax
  if _MULTIHOST.value:
    jax.distributed.initialize()
  from moto_jax.training import config_check, loop
  config = _CONFIG.value
  config_check.validate(config)          # before any compile or data collection
  loop.train_and_evaluate(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)


if __name__ == '__main__':
  app.run(main)
