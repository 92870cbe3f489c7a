"""moto_jax.allocator: the process restarts once, with the same arguments, and the setting made."""
import os
import subprocess
import sys

import pytest

from moto_jax import allocator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = f"""
import os, sys
sys.path.insert(0, {REPO!r})
from moto_jax import allocator
print('start', os.getpid(), flush=True)
allocator.reexec()
print('env', repr(os.environ.get('LD_PRELOAD', '')), repr(os.environ.get('GLIBC_TUNABLES', '')),
      repr(os.environ.get('MALLOC_CONF', '')), sys.argv[1:], os.getpid())
print(allocator.status())
"""
CLEAN = ('GLIBC_TUNABLES', 'MOTO_HUGEPAGES', 'MOTO_MALLOC', 'LD_PRELOAD', 'MALLOC_CONF')


def run(tmp_path, **env):
  script = tmp_path / 'prog.py'
  script.write_text(SCRIPT)
  environ = {k: v for k, v in os.environ.items() if k not in CLEAN}
  out = subprocess.run([sys.executable, str(script), 'a', '--b=1'], capture_output=True, text=True,
                       env={**environ, **env}, timeout=120, check=True)
  lines = out.stdout.splitlines()
  starts = [l.split()[1] for l in lines if l.startswith('start')]
  return starts, next(l for l in lines if l.startswith('env')), lines[-1]


def test_glibc_huge_pages_restart_once_keeping_arguments_and_other_tunables(tmp_path):
  starts, env, status = run(tmp_path, MOTO_MALLOC='glibc', GLIBC_TUNABLES='glibc.malloc.arena_max=2')
  assert "['a', '--b=1']" in env
  if allocator.glibc_available() is None:
    assert len(starts) == 2 and starts[0] == starts[1]                           # exec: the same process
    assert 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1' in env              # others kept
    assert status.startswith('malloc: glibc, transparent huge pages')
  else:                                                                          # e.g. an old glibc
    assert len(starts) == 1 and 'hugetlb' not in env
    assert status.startswith('malloc: glibc, 4 KiB pages (') and allocator.glibc_available() in status


@pytest.mark.skipif(allocator.jemalloc_path() is None, reason='libjemalloc is not installed')
def test_jemalloc_preloaded_with_purging_off_by_default(tmp_path):
  starts, env, status = run(tmp_path)
  assert len(starts) == 2 and starts[0] == starts[1]
  assert 'jemalloc' in env and 'dirty_decay_ms:-1,muzzy_decay_ms:-1' in env and 'hugetlb' not in env
  assert status.startswith('malloc: jemalloc, memory kept for reuse')
  # The user's own MALLOC_CONF is kept as it is.
  _, env, _ = run(tmp_path, MALLOC_CONF='narenas:2')
  assert "'narenas:2'" in env


def test_turned_off_or_already_set_it_does_not_restart(tmp_path):
  for env in ({'MOTO_HUGEPAGES': '0'}, {'MOTO_MALLOC': 'off'}):
    starts, line, status = run(tmp_path, **env)
    assert len(starts) == 1 and 'hugetlb' not in line and 'jemalloc' not in line
    assert status == f'malloc: glibc, 4 KiB pages ({"=".join(next(iter(env.items())))})'
  starts, _, _ = run(tmp_path, GLIBC_TUNABLES='glibc.malloc.hugetlb=0')
  assert len(starts) == 1


def test_unknown_choice_is_refused(monkeypatch):
  monkeypatch.delenv('MOTO_HUGEPAGES', raising=False)
  monkeypatch.setenv('MOTO_MALLOC', 'tcmalloc')
  with pytest.raises(ValueError, match="MOTO_MALLOC='tcmalloc'"):
    allocator.plan()
