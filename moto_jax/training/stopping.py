"""How the main job stops: the errors it raises with a way forward, and SIGINT/SIGTERM as a flag."""

import os
import signal

import tqdm

# Fault injection for the crash tests (benchmarks/faults.py): `MOTO_FAULT=<point>=<n>:<KILL|INT|TERM>`
# makes the process send itself that signal when the run reaches the point. Points: `grad_step`
# (after gradient step n), `episode` (after online episode n is stored), `checkpoint` (inside the save
# of checkpoint n, before it is written). Unset, `fault_point` does nothing.
FAULT_ENV = 'MOTO_FAULT'
FAULT_POINTS = ('grad_step', 'episode', 'checkpoint')


def parse_fault(spec: str) -> tuple[str, int, signal.Signals]:
  """'grad_step=7:KILL' -> ('grad_step', 7, SIGKILL); a bad spec raises ValueError naming it."""
  try:
    where, name = spec.split(':')
    point, n = where.split('=')
    sig = signal.Signals[f'SIG{name}']
    if point not in FAULT_POINTS or name not in ('KILL', 'INT', 'TERM'):
      raise ValueError
    return point, int(n), sig
  except (ValueError, KeyError):
    raise ValueError(
      f'{FAULT_ENV}={spec!r}: expected <point>=<n>:<KILL|INT|TERM>, point one of {FAULT_POINTS}'
    ) from None


_fired = []


def fault_point(point: str, n: int) -> None:
  """Sends this process the signal of `MOTO_FAULT` when the run reaches that point, once per process
  (a stop by SIGINT saves a checkpoint, which must not stop it again)."""
  spec = os.environ.get(FAULT_ENV)
  if spec and not _fired and parse_fault(spec)[:2] == (point, n):
    _fired.append(spec)
    os.kill(os.getpid(), parse_fault(spec)[2])


class DiskFullError(OSError):
  """The disk filled up; the message says what was being written and where the run resumes."""


class NonFiniteError(RuntimeError):
  """Too many consecutive updates with non-finite losses."""


class _StopRequested:
  """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.requested:  # a second signal: stop now
      raise KeyboardInterrupt
    self.requested = True
    tqdm.tqdm.write(f'Received {signal.Signals(signum).name}: checkpointing and exiting.')

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
