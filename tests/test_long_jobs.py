"""Whole main jobs that take minutes (the `integration` tier): runs interrupted at chosen points
resume identical, and the Franka Kitchen job end to end. Each runs on its own data, so pytest-xdist
may run them beside the other modules."""

import json
import os

import numpy as np
import pytest

from moto_jax.data import episodes as ep_lib
from moto_jax.training import loop
from moto_jax.training.logger import read_metrics


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.xdist_group('faults')
def test_interrupted_runs_resume_identical(tmp_path):
  """The short fault campaign, stops at chosen points of the run (not moments in seconds, so the
  machine's speed cannot decide it): SIGKILL, SIGINT and SIGTERM after a gradient step, after an
  online episode and inside a checkpoint save; every resumed run equals the uninterrupted one
  (every metric, episode and final array), keeps at most 3 checkpoints and writes metrics.jsonl in
  order, once (benchmarks/faults.py). The debug run: 4 offline steps, 3 episodes of 10 steps, 2
  updates each; checkpoints 4, 28 and 40 (gradient + env steps)."""
  import argparse

  from benchmarks import faults

  args = argparse.Namespace(
    plan='grad_step=2:KILL,episode=1:INT,grad_step=9:TERM;checkpoint=4:KILL,episode=2:KILL,checkpoint=28:INT',
    trials=0,
    faults_per_trial=1,
    min_interruptions=0,
    seed=3,
    signal='KILL',
    task='drawer-open',
    preset='debug',
    run_seed=0,
    env_steps=30,
    offline_steps=4,
    checkpoint_every_steps=4,
    fast_compile=1,
    out=str(tmp_path),
  )
  identical, rows = faults.campaign(args)
  assert identical == 2, rows
  exits = [f.split('(')[1].rstrip(')') for r in rows for f in r['faults']]
  # Every stop was reached: SIGKILL ends the process at once, SIGINT and SIGTERM after a checkpoint.
  assert exits == ['exit -9', 'exit 0', 'exit 0', 'exit -9', 'exit -9', 'exit 0'], rows
  assert faults.invariants(str(tmp_path / 'reference')) == []
  files = ep_lib.episode_files(str(tmp_path / 'reference' / 'episodes'))
  assert [os.path.basename(f) for f in files] == [ep_lib.episode_name(i) for i in range(3)]
  # Each episode started from its own seed: no two identical first frames.
  assert len({ep_lib.load_episode(f)['image'][0].tobytes() for f in files}) == 3


@pytest.mark.integration
@pytest.mark.xdist_group('kitchen_job')
def test_kitchen_main_job_end_to_end(tmp_path, monkeypatch):
  """Kitchen offline episodes carry keys that online episodes lack (the per-step prior weights) and
  online ones keys that offline ones lack (each target's progress); the run must not care. With segment cloning (per-step prior weights) and the decimated meshes (the defaults). Then the
  composition analysis (App. A.1) reads the finished run."""
  from configs import kitchen as kitchen_config

  c = kitchen_config.get_config('mixed,debug').unlock()
  c.data.cache_dir = str(tmp_path / 'cache')
  c.data.workers = 1
  c.train.offline_steps, c.train.env_steps, c.train.updates_per_episode = 2, 40, 2
  c.train.eval_every_episodes = 2
  assert c.data.bc_segments  # the default: per-step prior weights through the store, refits and diagnostics
  summary = loop.train_and_evaluate(c.lock(), str(tmp_path / 'run'), log=lambda *a: None)
  assert summary['phase'] == 'done' and summary['episodes'] == 2 and summary['env_steps'] == 40
  assert summary['grad_steps'] == 2 + 2 * 2
  offline = ep_lib.load_episode(ep_lib.episode_files(offline_data_dir(c))[0])
  assert offline['tasks_done'].shape == (len(offline['image']), 4)
  online = ep_lib.load_episode(ep_lib.episode_files(str(tmp_path / 'run' / 'episodes'))[0])
  assert online['tasks_done'].shape == (21, 4) and online['subtasks_done'].shape[0] == 21
  np.testing.assert_array_equal(online['reward'][1:], online['tasks_done'][1:].sum(1))
  evals = [r for r in read_metrics(str(tmp_path / 'run')) if r['phase'] == 'eval']
  assert all(np.isfinite(r['bound/estimate']) for r in evals)  # the Kitchen expert as the reference
  assert summary['final_tasks_completed'] == evals[-1]['eval/tasks_completed']  # target tasks per episode
  moved = online['tasks_progress']
  assert moved.shape == (21, 4) and (moved[0] == 0).all() and ((moved >= 0) & (moved <= 1)).all()
  progress = [v for k, v in evals[-1].items() if k.startswith('eval/progress_')]
  assert len(progress) == 4 and all(0.0 <= v <= 1.0 for v in progress)
  # Evaluating the final checkpoint reports each target's completion and progress in one line.
  from moto_jax.analysis import checkpoints

  lines = []
  (record,) = checkpoints.evaluate_checkpoints(str(tmp_path / 'run'), [None], episodes=2, envs=2, log=lines.append)
  assert 'eval/progress_kettle' in record and any(line.startswith('  target tasks per episode') for line in lines)

  # A.1 on this run. 20-step debug episodes cannot hold four scripted solutions, so the expert
  # episodes are recorded ones with the targets marked done at steps 3, 6, 9 and 12.
  from moto_jax.analysis import composition
  from moto_jax.suites import kitchen as kitchen_suite

  def solved(config, n, offset=0):
    del config, offset
    out = []
    for i in range(n):
      e = dict(ep_lib.load_episode(ep_lib.episode_files(str(tmp_path / 'run' / 'episodes'))[i % 2]))
      flags = np.zeros((len(e['image']), 4), bool)
      for k, t in enumerate((3, 6, 9, 12)):
        flags[t:, k] = True
      e.update(tasks_done=flags, success=np.array(True))
      out.append(e)
    return out

  monkeypatch.setattr(kitchen_suite.KitchenSuite, 'held_out_episodes', lambda self, *a, **k: solved(*a, **k))
  r = composition.composition_report(str(tmp_path / 'run'), episodes=2, after=4, log=lambda *a: None)
  assert r['episodes'] == 2 and r['context'] == [10, 10]  # up to the third target's step, 9
  assert r['predicted_steps'] == [7, 7]  # steps 10..16: cut 4 after the fourth (12)
  for k in ('pred_reward_max', 'pred_reward_final', 'policy_reward_final', 'image_mse', 'max_training_reward'):
    assert np.isfinite(r[k]), k
  assert r['true_count_final'] == 4.0 and r['pred_reward_mean_when_four_done'] is not None
  for k in ('gif', 'png'):
    assert os.path.getsize(r[k]) > 0
  assert json.load(open(r['png'][:-4] + '.json'))['context'] == [10, 10]


def offline_data_dir(config):
  from moto_jax.training import offline_data

  return offline_data.cache_path(config)
