"""The memory allocator of processes that run XLA:CPU updates: a process-start setting.

XLA:CPU allocates an update's temporaries (GiBs at the paper sizes) afresh at every call. glibc's
malloc serves allocations this large with fresh mappings and returns them on free, so the kernel
zeroes and maps the same memory again at every update: at `paper` sizes on a 2-core CPU, 1.6 s of
kernel time per 6.8 s update with glibc's huge pages, 3.8 s per 8.1 s without them
(`python -m benchmarks.train_step` prints both). Two remedies, chosen in this order:

* `jemalloc` (Debian/Ubuntu: `apt install libjemalloc2`), preloaded with its purging turned off
  and one arena (`MALLOC_CONF=narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:-1`, plus `thp:always`
  where the kernel allows transparent huge pages): freed memory stays mapped and the next update
  reuses it. Measured in one session, alternating runs: the `paper` update 7.7-7.9 -> 6.1-6.5 s,
  `small` 0.42-0.44 -> 0.38-0.39 s. One arena, because without purging each of jemalloc's arenas
  (4 per core) keeps its own high-water mark: the threads that evaluate, refit and collect each filled
  another, and a `small` run's resident memory grew to 11 GB (5 GB with one arena, at the same speed).
* otherwise glibc's `glibc.malloc.hugetlb=1` (glibc >= 2.35): fresh mappings in 2 MiB transparent
  huge pages, one fault per 2 MiB instead of per 4 KiB (paper 9.9 -> 7.4 s in session 23).

Both are read only when a process starts, so `reexec` starts the program again (same process id,
interpreter, arguments; environment plus the setting). MOTO_MALLOC chooses: `auto` (default),
`jemalloc`, `glibc` (huge pages only) or `off` (leave the process as it is; where MOTO_MALLOC is
unset, MOTO_HUGEPAGES=0, the older switch, means the same). MOTO_JEMALLOC_PATH names the library
where it is not in a standard place ('' : behave as if none were installed). Child processes
inherit the setting.
"""

import ctypes.util
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
JEMALLOC_CONF = 'narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:-1'
_THP = '/sys/kernel/mm/transparent_hugepage/enabled'
_JEMALLOC_PATHS = (
  '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
  '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2',
  '/usr/lib64/libjemalloc.so.2',
  '/usr/lib/libjemalloc.so.2',
  '/usr/local/lib/libjemalloc.so.2',
)
CHOICES = ('auto', 'jemalloc', 'glibc', 'off')


def _thp_mode() -> str | None:
  """The kernel's transparent huge page mode ('always', 'madvise', 'never'), None if unknown."""
  try:
    with open(_THP) as f:
      text = f.read()
  except OSError:
    return None
  return text[text.index('[') + 1 : text.index(']')] if '[' in text else None


def jemalloc_path() -> str | None:
  """Path (or library name) of an installed libjemalloc, None if there is none."""
  if 'MOTO_JEMALLOC_PATH' in os.environ:
    return os.environ['MOTO_JEMALLOC_PATH'] or None
  for path in _JEMALLOC_PATHS:
    if os.path.exists(path):
      return path
  return ctypes.util.find_library('jemalloc')


def glibc_available() -> str | None:
  """Why glibc's huge-page tunable cannot help here (a sentence), or None when it can."""
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
  mode = _thp_mode()
  if mode is None:
    return f'{_THP} is missing or unreadable'
  if mode == 'never':
    return 'transparent huge pages are off in the kernel'
  return None


def choice() -> tuple[str, str]:
  """(MOTO_MALLOC validated, the variable that set it); unset, MOTO_HUGEPAGES=0 means 'off'."""
  if 'MOTO_MALLOC' not in os.environ:
    if os.environ.get('MOTO_HUGEPAGES', '1') == '0':
      return 'off', 'MOTO_HUGEPAGES=0'
    return 'auto', ''
  value = os.environ['MOTO_MALLOC']
  if value not in CHOICES:
    raise ValueError(f'MOTO_MALLOC={value!r}; expected one of {CHOICES}')
  return value, f'MOTO_MALLOC={value}'


def _jemalloc_mapped() -> bool:
  """Whether a libjemalloc is mapped into this process (False where /proc is unreadable)."""
  try:
    with open('/proc/self/maps') as f:
      return 'jemalloc' in f.read()
  except OSError:
    return False


def active() -> str | None:
  """What this process runs with: 'jemalloc' (preloaded and mapped), 'glibc' (huge pages) or None."""
  if 'jemalloc' in os.environ.get('LD_PRELOAD', '') and _jemalloc_mapped():
    return 'jemalloc'
  if TUNABLE in os.environ.get('GLIBC_TUNABLES', ''):
    return 'glibc'
  return None


def plan(chosen: tuple[str, str] | None = None) -> tuple[str | None, str]:
  """(what to restart with: 'jemalloc', 'glibc' or None, why not when None), for `chosen` (the
  result of `choice()`, read here when None)."""
  wanted, source = chosen or choice()
  if wanted == 'off':
    return None, source
  if 'jemalloc' in os.environ.get('LD_PRELOAD', '') or TUNABLE in os.environ.get('GLIBC_TUNABLES', ''):
    return None, 'already set'  # also: a preload that failed is not retried
  if wanted in ('auto', 'jemalloc') and jemalloc_path():
    return 'jemalloc', ''
  if wanted == 'jemalloc':
    return None, 'MOTO_MALLOC=jemalloc but no libjemalloc found (apt-get install libjemalloc2)'
  if 'glibc.malloc.hugetlb' in os.environ.get('GLIBC_TUNABLES', ''):
    return None, 'GLIBC_TUNABLES sets glibc.malloc.hugetlb'
  why = glibc_available()
  return (None, why) if why else ('glibc', '')


def reexec() -> None:
  """Restarts this Python program once with the allocator setting `plan` picks; returns without
  doing anything where none applies, it is already set, or it is turned off."""
  chosen = choice()
  what, why = plan(chosen)
  if what is None:
    if chosen[0] == 'jemalloc' and why != 'already set':
      print(f'moto_jax.xla_cpu.allocator: {why}; running with glibc as it is', file=sys.stderr, flush=True)
    return
  if what == 'jemalloc':
    preload = os.environ.get('LD_PRELOAD', '')
    os.environ['LD_PRELOAD'] = f'{jemalloc_path()} {preload}'.strip()
    if 'MALLOC_CONF' not in os.environ:  # the user's own settings win
      thp = ',thp:always' if _thp_mode() in ('always', 'madvise') else ''
      os.environ['MALLOC_CONF'] = JEMALLOC_CONF + thp
  else:
    tunables = os.environ.get('GLIBC_TUNABLES', '')
    os.environ['GLIBC_TUNABLES'] = f'{tunables}:{TUNABLE}' if tunables else TUNABLE
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, [sys.executable] + sys.orig_argv[1:])


def status() -> str:
  """One line for logs: the allocator this process runs with."""
  now = active()
  if now is None and 'jemalloc' in os.environ.get('LD_PRELOAD', ''):
    return f'malloc: glibc (LD_PRELOAD names jemalloc, but it is not loaded: {os.environ["LD_PRELOAD"]})'
  if now == 'jemalloc':
    return f'malloc: jemalloc, memory kept for reuse (MALLOC_CONF={os.environ.get("MALLOC_CONF", "")})'
  if now == 'glibc':
    return 'malloc: glibc, transparent huge pages (glibc.malloc.hugetlb=1)'
  _, why = plan()
  return f'malloc: glibc, 4 KiB pages ({why or "not restarted"})'
