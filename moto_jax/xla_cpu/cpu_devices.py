"""Splitting the CPU into XLA devices for data parallelism (XLA:CPU runs a step mostly on one core).

Must run before jax is imported: XLA reads the device count once, when its CPU backend starts.
"""

import os

FLAG = 'xla_force_host_platform_device_count'


def split(batch_size: int | None = None, requested: int | None = None) -> int:
  """Adds `--xla_force_host_platform_device_count` to XLA_FLAGS: `requested`, else the largest
  divisor of `batch_size` (any count where None) not above this process's cores. Returns the
  count, or 0 where XLA_FLAGS already sets one (it is kept)."""
  flags = os.environ.get('XLA_FLAGS', '')
  if FLAG in flags:
    return 0
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
  n = requested or max(d for d in range(1, cores + 1) if batch_size is None or batch_size % d == 0)
  os.environ['XLA_FLAGS'] = f'{flags} --{FLAG}={n}'.strip()
  return n
