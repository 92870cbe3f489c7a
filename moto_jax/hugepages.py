"""Transparent huge pages for XLA:CPU's buffers: a process-start setting of glibc.

XLA:CPU allocates an update's temporaries (hundreds of MiB at the paper sizes) afresh at every
call, and the kernel maps them in 4 KiB pages, one fault per page. With glibc's tunable
`glibc.malloc.hugetlb=1` (glibc >= 2.35) malloc asks for transparent huge pages (2 MiB) instead:
the `paper` update ran 26 % faster on a 2-core CPU (BUILD_NOTES, "Where an update's time goes").
glibc reads its tunables only when a process starts, so `reexec` starts the program again with
the tunable set; the process id, arguments and environment stay otherwise the same.

Set MOTO_HUGEPAGES=0 to leave the process as it is.
"""
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
_THP = '/sys/kernel/mm/transparent_hugepage/enabled'


def available() -> str | None:
  """Why the tunable cannot help here (a sentence), or None when it can."""
  if not sys.platform.startswith('linux'):
    return 'not Linux'
  try:
    libc = os.confstr('CS_GNU_LIBC_VERSION') or ''
  except (ValueError, OSError):
    libc = ''
  parts = libc.split()
  if len(parts) != 2 or parts[0] != 'glibc':
    return f'C library {libc or "unknown"!r} is not glibc'
  if tuple(int(x) for x in parts[1].split('.')[:2]) < (2, 35):
    return f'{libc} is older than 2.35'
  try:
    with open(_THP) as f:
      if '[never]' in f.read():
        return 'transparent huge pages are off in the kernel'
  except OSError:
    return f'{_THP} is missing'
  return None


def wanted() -> bool:
  """True when this process should be restarted with the tunable."""
  if os.environ.get('MOTO_HUGEPAGES', '1') == '0' or 'glibc.malloc.hugetlb' in os.environ.get('GLIBC_TUNABLES', ''):
    return False
  return available() is None


def reexec() -> None:
  """Restarts this Python program (same interpreter and command line) with `TUNABLE` in
  GLIBC_TUNABLES, once; returns without doing anything where it is set, unavailable or disabled."""
  if not wanted():
    return
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  os.environ['GLIBC_TUNABLES'] = f'{tunables}:{TUNABLE}' if tunables else TUNABLE
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, [sys.executable] + sys.orig_argv[1:])


def status() -> str:
  """One line for logs: whether this process runs with the tunable."""
  if TUNABLE in os.environ.get('GLIBC_TUNABLES', ''):
    return 'malloc: transparent huge pages (glibc.malloc.hugetlb=1)'
  why = available() if os.environ.get('MOTO_HUGEPAGES', '1') != '0' else 'MOTO_HUGEPAGES=0'
  return f'malloc: 4 KiB pages ({why or "not restarted"})'
