"""moto_jax.hugepages: the process restarts once, with the same arguments, and the tunable set."""
import os
import subprocess
import sys

from moto_jax import hugepages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = f"""
import os, sys
sys.path.insert(0, {REPO!r})
from moto_jax import hugepages
print('start', os.getpid(), flush=True)
hugepages.reexec()
print('tunables', os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:], os.getpid())
print(hugepages.status())
"""


def run(tmp_path, **env):
  script = tmp_path / 'prog.py'
  script.write_text(SCRIPT)
  environ = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', 'MOTO_HUGEPAGES')}
  out = subprocess.run([sys.executable, str(script), 'a', '--b=1'], capture_output=True, text=True,
                       env={**environ, **env}, timeout=120, check=True)
  return out.stdout.splitlines()


def test_restarts_once_with_the_tunable_and_the_same_arguments(tmp_path):
  lines = run(tmp_path, GLIBC_TUNABLES='glibc.malloc.arena_max=2')
  starts = [l for l in lines if l.startswith('start')]
  tunables = next(l for l in lines if l.startswith('tunables'))
  assert "['a', '--b=1']" in tunables
  if hugepages.available() is None:
    assert len(starts) == 2 and starts[0].split()[1] == starts[1].split()[1]    # exec: the same process
    assert 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1' in tunables       # others kept
    assert lines[-1].startswith('malloc: transparent huge pages')
  else:                                                                          # e.g. an old glibc
    assert len(starts) == 1 and 'hugetlb' not in tunables
    assert lines[-1].startswith('malloc: 4 KiB pages (') and hugepages.available() in lines[-1]


def test_turned_off_or_already_set_it_does_not_restart(tmp_path):
  lines = run(tmp_path, MOTO_HUGEPAGES='0')
  assert sum(l.startswith('start') for l in lines) == 1
  assert 'hugetlb' not in next(l for l in lines if l.startswith('tunables'))
  assert lines[-1] == 'malloc: 4 KiB pages (MOTO_HUGEPAGES=0)'
  lines = run(tmp_path, GLIBC_TUNABLES='glibc.malloc.hugetlb=0')
  assert sum(l.startswith('start') for l in lines) == 1
