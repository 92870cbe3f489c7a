r"""MOTO: offline pre-training, then online fine-tuning, in one resumable job.

  python -m launch.main --config=configs/metaworld.py:drawer-open,small --workdir=runs/drawer-open

Re-running the same command on the same workdir resumes from its last checkpoint.
Override any config field with `--config.<field>=<value>` (e.g. `--config.seed=1`).
At launch the job restarts itself once with an allocator that keeps XLA:CPU's per-update buffers
mapped (jemalloc where installed, else glibc's huge pages; moto_jax/xla_cpu/allocator.py; MOTO_MALLOC=off
turns that off).
"""

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from moto_jax.xla_cpu import cpu_devices

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:task,preset].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, episodes, logs and plots.')
_ALLOW_CHANGE = flags.DEFINE_bool(
  'allow_config_change', False, 'Resume a workdir whose recorded config differs from this one.'
)
_MULTIHOST = flags.DEFINE_bool(
  'multihost',
  False,
  'Call jax.distributed.initialize() (pods, clusters: '
  'the coordinator and process ids are detected on TPU pods and SLURM).',
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address',
  None,
  'With --multihost, by hand: host:port of process 0 (also --num_processes and --process_id).',
)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'With --multihost, by hand: how many processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'With --multihost, by hand: this process (0 .. N-1).')
_CPU_DEVICES = flags.DEFINE_integer(
  'cpu_devices',
  None,
  'Split the CPU into this many XLA devices for data parallelism (XLA:CPU runs a '
  'step mostly on one core). Default: the largest divisor of train.batch_size <= the core count. '
  'Ignored when a GPU/TPU is the default backend.',
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  by_hand = {
    'coordinator_address': _COORDINATOR.value,
    'num_processes': _NUM_PROCESSES.value,
    'process_id': _PROCESS_ID.value,
  }
  if not _MULTIHOST.value and any(v is not None for v in by_hand.values()):
    given = ', '.join(f'--{k}' for k, v in by_hand.items() if v is not None)
    raise app.UsageError(f'{given} only apply with --multihost')
  # Each process's CPU devices share its part of the global batch.
  cpu_devices.split(config.train.batch_size // (_NUM_PROCESSES.value or 1), _CPU_DEVICES.value)
  import jax  # pylint: disable=g-import-not-at-top

  if _MULTIHOST.value:
    # CPU processes exchange gradients over gloo (set before any backend starts; unused on GPU/TPU).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value
    )
  from moto_jax.errors import UserError
  from moto_jax.training import loop

  try:
    # train_and_evaluate validates the config first, before any compile or data collection.
    loop.train_and_evaluate(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
  except (UserError, loop.DiskFullError, loop.NonFiniteError) as e:
    sys.stderr.write(f'FATAL {type(e).__name__}: {e}\n')  # the message names the problem; no traceback
    sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with an unknown `--config.<field>` named in one line instead of a traceback."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:  # ml_collections: an override names a missing field
    text = str(e)
    found = re.search(r"'\\?'?([A-Za-z_][\w-]*)", text)
    key = found.group(1) if found else '?'
    arg = next(
      (a.split('=')[0] for a in argv if a.startswith('--config.') and key in a.split('=')[0].split('.')[1:]), None
    )
    if arg is None:  # not an override naming a missing field: a real error
      raise
    hint = re.search(r'Did you mean "([^"]+)"', text)
    sys.stderr.write(
      f'FATAL Flags parsing error: {arg}: the config has no field {key!r}'
      + (f'; did you mean {hint.group(1)!r}?' if hint else '')
      + '\n'
    )
    sys.exit(1)


if __name__ == '__main__':
  from moto_jax.xla_cpu import allocator

  allocator.reexec()  # jemalloc or glibc's huge pages for XLA:CPU's buffers (moto_jax/xla_cpu/allocator.py)
  app.run(main, flags_parser=parse_flags)
