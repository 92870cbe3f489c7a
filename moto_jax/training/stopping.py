"""How the main job stops: the errors it raises with a way forward, and SIGINT/SIGTERM as a flag."""

import signal

import tqdm


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
