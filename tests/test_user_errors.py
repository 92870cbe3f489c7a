"""One run per workdir, one FATAL line per user error, and a warning when the behaviour prior is off."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import job_config
import pytest

from moto_jax.data import episodes as ep_lib
from moto_jax.errors import DatasetError, WorkdirError
from moto_jax.training import loop, offline_data, workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.xdist_group('training')


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  """The debug preset's generated drawer-open dataset (3 short scripted episodes)."""
  cache = tmp_path_factory.mktemp('cache')
  config = job_config(cache)
  return config, offline_data.resolve(config, log=lambda *a: None)


def main_job(workdir, *flags, timeout=300):
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.main',
      '--config=configs/metaworld.py:drawer-open,debug',
      f'--workdir={workdir}',
      *flags,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
  )


def one_fatal_line(out):
  assert out.returncode == 1, out.stderr[-3000:]
  assert 'Traceback' not in out.stderr, out.stderr[-3000:]
  fatal = [line for line in out.stderr.splitlines() if line.startswith('FATAL ')]
  assert len(fatal) == 1, out.stderr[-3000:]
  return fatal[0]


def test_a_second_run_on_a_workdir_is_refused_at_once(tmp_path, dataset):
  """While one process holds the workdir, the same command refuses in one line naming it, and
  writes nothing there."""
  workdir = str(tmp_path / 'run')
  held = workdir_lock.acquire(workdir)
  try:
    config, data_dir = dataset
    with pytest.raises(WorkdirError, match=f'in use by another run \\(pid {os.getpid()} on '):
      loop.train_and_evaluate(config, workdir, log=lambda *a: None)
    start = time.time()
    line = one_fatal_line(main_job(workdir, f'--config.data.dir={data_dir}'))
    assert f'pid {os.getpid()}' in line and 'FATAL WorkdirError' in line
    assert time.time() - start < 120  # before any network is built or compiled
    assert sorted(os.listdir(workdir)) == ['.lock']
  finally:
    workdir_lock.release(held)


def test_a_killed_run_does_not_block_the_resume(tmp_path):
  """The lock is the kernel's: a holder killed by SIGKILL leaves the file, not the lock."""
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import sys, time; from moto_jax.training import workdir_lock; '
      f'h = workdir_lock.acquire({workdir!r}); print("held", flush=True); time.sleep(600)',
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(WorkdirError, match=f'pid {holder.pid}'):
      workdir_lock.acquire(workdir)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  workdir_lock.release(workdir_lock.acquire(workdir))
  assert os.path.exists(os.path.join(workdir, '.lock'))


def _copy(src, dst, change):
  for i, path in enumerate(ep_lib.episode_files(src)):
    e = ep_lib.load_episode(path)
    change(e)
    ep_lib.save_episode(os.path.join(dst, ep_lib.episode_name(i)), e)


def test_corrupt_episode_is_one_line(tmp_path, dataset):
  """Actions of 3 dimensions in a 4-dimension task: the file, the field and the skip_corrupt hint, no traceback."""
  _, src = dataset
  bad = str(tmp_path / 'bad')
  _copy(src, bad, lambda e: e.update(action=e['action'][:, :3]))
  line = one_fatal_line(main_job(str(tmp_path / 'run'), f'--config.data.dir={bad}'))
  assert 'FATAL CorruptEpisodeError' in line and 'episode_000000.npz' in line and 'dimension 3' in line


def test_dataset_of_other_camera_is_one_line_naming_the_config(tmp_path, dataset):
  """A dataset recorded with the `corner` camera, a run with the authors' camera."""
  _, src = dataset
  other = str(tmp_path / 'corner')
  _copy(src, other, lambda e: None)
  with open(os.path.join(src, 'manifest.json')) as f:
    manifest = json.load(f)
  manifest['env']['render']['camera'] = 'corner'
  with open(os.path.join(other, 'manifest.json'), 'w') as f:
    json.dump(manifest, f)
  line = one_fatal_line(main_job(str(tmp_path / 'run'), f'--config.data.dir={other}'))
  assert 'FATAL DatasetError' in line and "render.camera: dataset 'corner', this run {" in line
  assert "config.env.camera='authors'" in line
  with pytest.raises(DatasetError):
    loop.train_and_evaluate(job_config(tmp_path, {'data.dir': other}), str(tmp_path / 'run2'), log=print)


def test_data_without_a_successful_episode_warns_and_records_it(tmp_path, dataset):
  _, src = dataset
  failed = str(tmp_path / 'failed')

  def fail(e):
    e['success'], e['bc_weight'] = False, 0.0

  _copy(src, failed, fail)
  lines = []
  config = job_config(tmp_path, {'data.dir': failed}, offline_steps=2, env_steps=0)
  summary = loop.train_and_evaluate(config, str(tmp_path / 'run'), log=lines.append)
  warning = [line for line in lines if line.startswith('WARNING: none of the 3 offline episodes')]
  assert len(warning) == 1 and "the environment's success flag at some step" in warning[0]
  assert 'Eq. 10 is off' in warning[0]
  assert summary['behaviour_prior'] == {
    'episodes': 3,
    'episodes_with_prior': 0,
    'rule': "the environment's success flag at some step",
    'active': False,
  }
