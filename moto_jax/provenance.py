"""Where a run came from: the code's commit, the library versions, the machine and the devices.

Written into each run's `summary.json` and `config.json` record, and into `results/` records, so
that a number can always be traced to the code and machine that produced it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'mujoco', 'metaworld')


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(['git', '-C', REPO, *args], capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def code() -> dict:
  """The commit of the checkout this package runs from, and whether tracked files differ from it
  (None for both when it is not a git checkout of this project, e.g. an installed wheel)."""
  top = _git('rev-parse', '--show-toplevel')
  if top is None or os.path.realpath(top) != os.path.realpath(REPO):
    return dict(commit=None, dirty=None)
  commit = _git('rev-parse', 'HEAD')
  status = _git('status', '--porcelain', '--untracked-files=no') if commit else None
  return dict(commit=commit, dirty=None if status is None else bool(status))


def versions() -> dict:
  out = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict:
  """The host (CPU model, cores) and, where JAX is already imported, its devices."""
  out = dict(host=platform.node(), cpu=cpu_model(), cores=os.cpu_count(), python=platform.python_version())
  import sys

  if 'jax' in sys.modules:
    import jax

    devices = jax.devices()
    out.update(
      device_kind=devices[0].device_kind,
      platform=devices[0].platform,
      device_count=len(devices),
      process_count=jax.process_count(),
    )
  return out


def collect() -> dict:
  """Everything above in one dict: `commit`, `dirty`, `golden` (the hash of the update's golden
  file, moto_jax/testing.py), `versions`, `machine`, `date`."""
  import datetime

  from moto_jax import testing

  return dict(
    **code(),
    golden=testing.golden_hash(),
    versions=versions(),
    machine=machine(),
    date=datetime.date.today().isoformat(),
  )


def describe_machine(m: dict) -> str:
  """One short line for tables: 'Intel Xeon ... (2 cores), 2 cpu devices'."""
  text = f'{m.get("cpu", "?")} ({m.get("cores", "?")} cores)'
  if m.get('platform') and m['platform'] != 'cpu':
    text = f'{m.get("device_count", "?")} x {m.get("device_kind", "?")}'
  return text
