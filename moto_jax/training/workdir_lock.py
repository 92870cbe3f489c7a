"""One run per workdir: an advisory lock held for the life of the process.

`acquire(workdir)` takes an exclusive `flock` on `<workdir>/.lock` (one file per process of a
multi-host run) and writes who holds it; a second process on the same workdir is refused at once,
naming the holder. The kernel drops the lock when its process ends, however it ends (kill -9
included), so a killed run never blocks the resume that follows. The file itself stays; only the
lock on it counts.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import socket
import sys

from moto_jax.errors import WorkdirError


def acquire(workdir: str, process_index: int = 0):
  """Locks `workdir` for this process; returns the open lock file (keep it open; `release` or exit)."""
  os.makedirs(workdir, exist_ok=True)
  name = '.lock' if process_index == 0 else f'.lock.{process_index}'
  path = os.path.join(workdir, name)
  try:
    handle = open(path, 'a+')  # noqa: SIM115 (held open for the process's life)
  except OSError as e:
    raise WorkdirError(f'{workdir}: cannot write there ({e.strerror}); use another --workdir') from None
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    handle.seek(0)
    holder = handle.read().strip() or 'another process'
    handle.close()
    raise WorkdirError(
      f'{workdir} is in use by another run ({holder}). Wait for it to end, stop it, or use another --workdir.'
    ) from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
      raise
    # A file system without flock (some NFS, Lustre, FUSE mounts): run, unprotected, and say so.
    print(
      f'WARNING: {workdir}: this file system has no file locks ({e.strerror}); nothing stops a second '
      'run on this workdir',
      file=sys.stderr,
      flush=True,
    )
  handle.seek(0)
  handle.truncate()
  since = datetime.datetime.now().isoformat(timespec='seconds')
  handle.write(f'pid {os.getpid()} on {socket.gethostname()} since {since}\n')
  handle.flush()
  return handle


def release(handle) -> None:
  try:
    fcntl.flock(handle, fcntl.LOCK_UN)
  except OSError:
    pass
  handle.close()
