"""moto_jax.xla_cpu.allocator: the process restarts once, with the same arguments, and the setting made."""

import os
import subprocess
import sys

import pytest

from moto_jax.xla_cpu import allocator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = f"""
import os, sys
sys.path.insert(0, {REPO!r})
from moto_jax.xla_cpu import allocator
print('start', os.getpid(), flush=True)
allocator.reexec()
print('env', repr(os.environ.get('LD_PRELOAD', '')), repr(os.environ.get('GLIBC_TUNABLES', '')),
      repr(os.environ.get('MALLOC_CONF', '')), sys.argv[1:], os.getpid())
print(allocator.status())
"""
CLEAN = ('GLIBC_TUNABLES', 'MOTO_HUGEPAGES', 'MOTO_MALLOC', 'LD_PRELOAD', 'MALLOC_CONF', 'MOTO_JEMALLOC_PATH')


def run(tmp_path, stderr=False, **env):
  script = tmp_path / 'prog.py'
  script.write_text(SCRIPT)
  environ = {k: v for k, v in os.environ.items() if k not in CLEAN}
  out = subprocess.run(
    [sys.executable, str(script), 'a', '--b=1'],
    capture_output=True,
    text=True,
    env={**environ, **env},
    timeout=120,
    check=True,
  )
  lines = out.stdout.splitlines()
  starts = [line.split()[1] for line in lines if line.startswith('start')]
  result = starts, next(line for line in lines if line.startswith('env')), lines[-1]
  return result + (out.stderr,) if stderr else result


def test_glibc_huge_pages_restart_once_keeping_arguments_and_other_tunables(tmp_path):
  starts, env, status = run(tmp_path, MOTO_MALLOC='glibc', GLIBC_TUNABLES='glibc.malloc.arena_max=2')
  assert "['a', '--b=1']" in env
  if allocator.glibc_available() is None:
    assert len(starts) == 2 and starts[0] == starts[1]  # exec: the same process
    assert 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1' in env  # others kept
    assert status.startswith('malloc: glibc, transparent huge pages')
  else:  # e.g. an old glibc
    assert len(starts) == 1 and 'hugetlb' not in env
    assert status.startswith('malloc: glibc, 4 KiB pages (') and allocator.glibc_available() in status


@pytest.mark.skipif(allocator.jemalloc_path() is None, reason='libjemalloc is not installed')
def test_jemalloc_preloaded_with_purging_off_by_default(tmp_path):
  starts, env, status = run(tmp_path)
  assert len(starts) == 2 and starts[0] == starts[1]
  assert 'jemalloc' in env and 'narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:-1' in env and 'hugetlb' not in env
  assert status.startswith('malloc: jemalloc, memory kept for reuse')
  # The user's own MALLOC_CONF is kept as it is.
  _, env, _ = run(tmp_path, MALLOC_CONF='narenas:2')
  assert "'narenas:2'" in env


@pytest.mark.skipif(allocator.glibc_available() is not None, reason='glibc huge pages unavailable here')
def test_without_jemalloc_auto_falls_back_to_glibc_and_an_explicit_request_warns(tmp_path):
  starts, env, status = run(tmp_path, MOTO_JEMALLOC_PATH='')
  assert len(starts) == 2 and 'glibc.malloc.hugetlb=1' in env and 'jemalloc' not in env
  assert status.startswith('malloc: glibc, transparent huge pages')
  starts, env, status, err = run(tmp_path, stderr=True, MOTO_JEMALLOC_PATH='', MOTO_MALLOC='jemalloc')
  assert len(starts) == 1 and 'hugetlb' not in env
  assert 'no libjemalloc found' in err and 'no libjemalloc found' in status
  # MOTO_MALLOC wins over the older MOTO_HUGEPAGES; a hugetlb value of the user's own is kept.
  starts, env, _ = run(tmp_path, MOTO_MALLOC='glibc', MOTO_HUGEPAGES='0')
  assert len(starts) == 2 and 'glibc.malloc.hugetlb=1' in env
  starts, env, status = run(tmp_path, MOTO_MALLOC='glibc', GLIBC_TUNABLES='glibc.malloc.hugetlb=0')
  assert len(starts) == 1 and 'GLIBC_TUNABLES sets glibc.malloc.hugetlb' in status


def test_turned_off_or_already_set_it_does_not_restart(tmp_path):
  for env in ({'MOTO_HUGEPAGES': '0'}, {'MOTO_MALLOC': 'off'}):
    starts, line, status = run(tmp_path, **env)
    assert len(starts) == 1 and 'hugetlb' not in line and 'jemalloc' not in line
    assert status == f'malloc: glibc, 4 KiB pages ({"=".join(next(iter(env.items())))})'
  starts, _, _ = run(tmp_path, GLIBC_TUNABLES='glibc.malloc.hugetlb=1', MOTO_JEMALLOC_PATH='')
  assert len(starts) == 1


def test_unknown_choice_is_refused(monkeypatch):
  monkeypatch.setenv('MOTO_HUGEPAGES', '0')
  monkeypatch.setenv('MOTO_MALLOC', 'tcmalloc')
  with pytest.raises(ValueError, match="MOTO_MALLOC='tcmalloc'"):
    allocator.plan()
