"""The main job end to end on the debug preset: its files, metrics, provenance, resume and faults on a finished run."""

import json
import os
import re

from conftest import job_config
import jax
import numpy as np
import pytest

from moto_jax.data import episodes as ep_lib
from moto_jax.training import checkpoint as ckpt_lib
from moto_jax.training import config_check, loop
from moto_jax.training.logger import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One pytest-xdist worker runs the tests that share the module's finished run and data cache. The
# fault campaign and the Kitchen job (integration tier): test_long_jobs.py; the job's parts without a run:
# test_job_parts.py.
pytestmark = pytest.mark.xdist_group('training')


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('cache')


RUN_LOG = []  # the console lines of `finished_run`


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, cache):
  workdir = str(tmp_path_factory.mktemp('run'))
  config = job_config(cache, offline_steps=4, env_steps=30, updates_per_episode=2, eval_every_episodes=2)
  RUN_LOG.clear()
  summary = loop.train_and_evaluate(config, workdir, log=RUN_LOG.append)
  return config, workdir, summary


def test_every_evaluation_says_how_long_it_took(finished_run):
  _, workdir, _ = finished_run
  evals = [r for r in read_metrics(workdir) if r.get('phase') == 'eval']
  lines = [line for line in RUN_LOG if line.startswith('  evaluation took ')]
  assert len(lines) == len(evals) >= 2
  assert re.fullmatch(r'  evaluation took \d+ s \((.* s, )?compiles included\)', lines[0]), lines[0]
  assert all('compiles' not in line for line in lines[1:]), lines


def test_run_counters_and_files(finished_run):
  config, workdir, summary = finished_run
  # 3 online episodes of 10 steps; 4 offline + 2 per episode gradient steps.
  assert summary['phase'] == 'done'
  assert summary['episodes'] == 3 and summary['env_steps'] == 30
  assert summary['grad_steps'] == 4 + 3 * 2
  for name in ('config.json', 'metrics.jsonl', 'learning_curve.png', 'summary.json'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert len(ep_lib.episode_files(os.path.join(workdir, 'episodes'))) == 3
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  assert [f for f in os.listdir(os.path.join(workdir, 'videos')) if f.endswith('.gif')]
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['train']['env_steps'] == 30


def test_summary_and_config_record_provenance(finished_run):
  """summary.json and config.json say which code, libraries and machine made the run, and how its
  wall clock splits into data, compile, evaluation and training."""
  import jax

  from moto_jax import provenance

  _, workdir, summary = finished_run
  with open(os.path.join(workdir, 'config.json')) as f:
    recorded = json.load(f)
  for prov in (summary['provenance'], recorded['provenance']):
    code = provenance.code()
    assert prov['commit'] == code['commit'] and prov['dirty'] == code['dirty']
    if code['commit'] is not None:  # a git checkout (CI's clean clone, a developer's)
      assert len(prov['commit']) == 40 and isinstance(prov['dirty'], bool)
    assert set(prov['versions']) >= {'jax', 'jaxlib', 'flax', 'mujoco', 'metaworld'}
    assert prov['versions']['jax'] == jax.__version__
  machine = summary['provenance']['machine']
  assert machine['device_count'] == jax.device_count() and machine['platform'] == 'cpu'
  assert machine['device_kind'] == jax.devices()[0].device_kind and machine['cores'] >= 1
  parts = summary['seconds']
  assert set(parts) == {'data', 'compile', 'evaluation', 'training'}
  assert all(v >= 0 for v in parts.values()) and parts['compile'] > 0 and parts['evaluation'] > 0
  np.testing.assert_allclose(sum(parts.values()), summary['wall_seconds'], rtol=1e-6)
  # The recorded config is still read back as the config alone.
  from moto_jax.training import config_check

  assert 'provenance' not in config_check.load_recorded(workdir)


def test_metrics_logged_by_phase(finished_run):
  _, workdir, _ = finished_run
  records = read_metrics(workdir)
  offline = [r for r in records if r['phase'] == 'offline' and 'wm/loss' in r]
  online = [r for r in records if r['phase'] == 'online' and 'wm/loss' in r]
  evals = [r for r in records if r['phase'] == 'eval']
  assert [r['step'] for r in offline] == [1, 2, 3, 4]  # log_every = 1 in the debug preset
  assert len(online) == 6
  for key in ('wm/image_loss', 'wm/kl', 'actor/loss', 'critic/loss'):
    assert all(np.isfinite(r[key]) for r in offline + online), key
  # After offline phase (0 env steps), every 2 episodes (20), and at the end (30).
  assert [r['env_steps'] for r in evals] == [0, 20, 30]
  # The refits: at the offline end, then after each online episode's updates (step: env steps).
  refits = [r for r in records if r['phase'] == 'refit']
  assert [(r['step'], r['grad_steps'], r['episodes']) for r in refits] == [
    (0, 4, 3),
    (10, 6, 4),
    (20, 8, 5),
    (30, 10, 6),
  ]
  assert all(np.isfinite(r['actor/bc_loglik']) and np.isfinite(r['critic/loss']) for r in refits)
  # Diagnostics at every evaluation: the evaluation episodes' first action, the BC gradient share.
  for r in evals:
    assert all(np.isfinite(r[f'eval/first_action_{i}']) for i in range(4))
    assert np.isfinite(r['diag/bc_grad_share'])


def test_summary_has_offline_end_and_lowest_online_success(finished_run):
  _, workdir, summary = finished_run
  evals = [r for r in read_metrics(workdir) if r['phase'] == 'eval']
  assert summary['offline_success_rate'] == evals[0]['eval/success_rate']
  assert summary['min_online_success_rate'] == min(r['eval/success_rate'] for r in evals[1:])
  assert summary['final_success_rate'] == evals[-1]['eval/success_rate']
  assert 0 < summary['wall_minutes'] < 60 and summary['seed'] == 0


def test_rerun_of_finished_run_changes_nothing(finished_run):
  config, workdir, summary = finished_run
  again = loop.train_and_evaluate(config, workdir, log=lambda *a: None)
  assert again['grad_steps'] == summary['grad_steps'] and again['episodes'] == summary['episodes']


def test_changed_config_is_refused_naming_fields(finished_run, cache):
  _, workdir, _ = finished_run
  config = job_config(cache, offline_steps=5, env_steps=30, updates_per_episode=2, eval_every_episodes=2)
  with pytest.raises(config_check.ConfigError, match=r'train\.offline_steps: 4 -> 5'):
    loop.train_and_evaluate(config, workdir)


def test_nonfinite_data_stops_run_with_checkpoint_intact(tmp_path, cache, finished_run):
  from moto_jax.training import offline_data

  config, _, _ = finished_run
  src = offline_data.cache_path(config)
  bad = tmp_path / 'overflow_data'
  for i, path in enumerate(ep_lib.episode_files(src)):
    e = ep_lib.load_episode(path)
    e['reward'][1:] = 1e30  # finite (NaN is refused at load), squared: inf
    ep_lib.save_episode(str(bad / ep_lib.episode_name(i)), e)
  c = job_config(cache, offline_steps=20, max_nonfinite=3, checkpoint_every_steps=2).unlock()
  c.data.dir = str(bad)
  workdir = str(tmp_path / 'run')
  with pytest.raises(loop.NonFiniteError, match='3 consecutive updates had non-finite losses') as err:
    loop.train_and_evaluate(c, workdir, log=lambda *a: None)
  assert 'wm/reward_loss' in str(err.value) and 'No checkpoint was written yet' in str(err.value)
  ckpt = ckpt_lib.Checkpointer(workdir)
  assert ckpt.latest_step() is None  # no update ever succeeded: nothing (bad) was saved
  ckpt.close()


def test_one_bad_episode_is_skipped_on_fresh_data(tmp_path, cache, finished_run):
  """A non-finite update is retried on fresh windows with a fresh key, so the run goes on."""
  from moto_jax.training import offline_data

  config, _, _ = finished_run
  bad = tmp_path / 'one_overflow'
  for i, path in enumerate(ep_lib.episode_files(offline_data.cache_path(config))):
    e = ep_lib.load_episode(path)
    if i == 0:
      e['reward'][1:] = 1e30  # one of the 3 episodes (a batch has 2 windows): inf loss
    ep_lib.save_episode(str(bad / ep_lib.episode_name(i)), e)
  c = job_config(cache, offline_steps=12, env_steps=0, max_nonfinite=10).unlock()
  c.data.dir = str(bad)
  summary = loop.train_and_evaluate(c, str(tmp_path / 'run'), log=lambda *a: None)
  # Retrying the same batch (the old guard) would have stopped at the first bad batch.
  assert summary['phase'] == 'done' and summary['grad_steps'] == 12
  assert summary['nonfinite_skipped'] >= 1


def test_failed_start_keeps_config_record_and_finished_run_extends(finished_run, cache, tmp_path):
  import shutil

  config, workdir, summary = finished_run
  work = str(tmp_path / 'copy')
  shutil.copytree(workdir, work)
  record = open(os.path.join(work, 'config.json')).read()
  bigger = job_config(cache, offline_steps=4, env_steps=30, updates_per_episode=2, eval_every_episodes=2).unlock()
  bigger.model.rssm['deter'] = 24  # the checkpoint cannot be restored into this
  with pytest.raises(Exception):
    loop.train_and_evaluate(bigger.lock(), work, allow_config_change=True, log=lambda *a: None)
  assert open(os.path.join(work, 'config.json')).read() == record  # the failed start changed nothing
  # The original command still runs (nothing to do), and a bigger budget continues the run.
  assert loop.train_and_evaluate(config, work, log=lambda *a: None)['episodes'] == 3
  more = job_config(cache, offline_steps=4, env_steps=40, updates_per_episode=2, eval_every_episodes=2)
  extended = loop.train_and_evaluate(more, work, allow_config_change=True, log=lambda *a: None)
  assert extended['phase'] == 'done' and extended['episodes'] == 4 and extended['env_steps'] == 40
  assert extended['grad_steps'] == summary['grad_steps'] + 2
  assert json.load(open(os.path.join(work, 'config.json')))['train']['env_steps'] == 40


def test_full_disk_is_named_and_loses_nothing(tmp_path, cache, finished_run, monkeypatch):
  import errno

  config, _, _ = finished_run
  c = job_config(cache, offline_steps=2, env_steps=20, updates_per_episode=1)
  workdir = str(tmp_path / 'run')
  real_save = ep_lib.save_episode
  calls = []

  def save(path, episode):
    calls.append(path)
    if len(calls) == 2:  # the second online episode hits a full disk
      raise OSError(errno.ENOSPC, 'No space left on device', path)
    return real_save(path, episode)

  monkeypatch.setattr(ep_lib, 'save_episode', save)
  with pytest.raises(loop.DiskFullError, match=r'No space left.*episode_000001.npz.*resumes from checkpoint'):
    loop.train_and_evaluate(c, workdir, log=lambda *a: None)
  monkeypatch.setattr(ep_lib, 'save_episode', real_save)
  summary = loop.train_and_evaluate(c, workdir, log=lambda *a: None)  # space freed: the same call finishes
  assert summary['phase'] == 'done' and summary['episodes'] == 2


def test_checkpoint_evaluation_and_openloop_report_read_a_finished_run(finished_run, tmp_path):
  """The library behind `launch.evaluate` and `launch.predict`, on a finished debug run."""
  from moto_jax.analysis import checkpoints, openloop
  from moto_jax.training import offline_data, restore

  _, workdir, _ = finished_run
  steps = checkpoints.checkpoint_steps(workdir, all_checkpoints=True, step=None)
  assert steps == sorted(steps) and len(steps) >= 1
  (record,) = checkpoints.evaluate_checkpoints(workdir, steps[-1:], episodes=3, envs=2, log=lambda s: None)
  assert record['step'] == steps[-1] and record['episodes'] == 3 and len(record['successes']) == 3
  assert record['eval/success_rate'] == pytest.approx(np.mean(record['successes']))
  with open(os.path.join(workdir, f'evaluate_{steps[-1]}.json')) as f:
    assert json.load(f)['successes'] == record['successes']
  (explored,) = checkpoints.evaluate_checkpoints(
    workdir, steps[-1:], episodes=3, envs=2, log=lambda s: None, explore=True
  )
  with open(os.path.join(workdir, f'evaluate_explore_{steps[-1]}.json')) as f:
    assert json.load(f)['explore'] is True and not record['explore']
  # The exploring policy draws its actions (agent.explore_from 'sample'), so the first actions differ.
  assert explored['eval/first_action_0'] != record['eval/first_action_0']
  # --demo_diagnostics. The debug run's 10-step episodes never succeed: none is a demo, which is
  # said; the same episodes marked as carrying the prior are diagnosed on.
  with pytest.raises(ValueError, match='holds no episode that carries the behaviour prior'):
    checkpoints.demo_diagnostics(workdir, steps[-1:], log=lambda s: None)
  data_dir = offline_data.resolve(restore.load_config(workdir), log=lambda *a: None)
  for f in ep_lib.episode_files(data_dir):
    ep_lib.save_episode(str(tmp_path / os.path.basename(f)), dict(ep_lib.load_episode(f), bc_weight=1.0))
  (diag,) = checkpoints.demo_diagnostics(workdir, steps[-1:], log=lambda s: None, data_dir=str(tmp_path))
  with open(os.path.join(workdir, f'demo_diagnostics_{steps[-1]}.json')) as f:
    assert json.load(f)['diag/q_prefers_demo'] == diag['diag/q_prefers_demo']
  assert diag['step'] == steps[-1] and diag['demos'] >= 1
  assert 0.0 <= diag['diag/q_prefers_demo'] <= 1.0 and -1.0 <= diag['diag/dqda_back_cos'] <= 1.0
  assert all(diag[f'diag/action_err_{p}'] >= 0.0 for p in ('reset', 'start', 'middle', 'end'))
  report = openloop.openloop_report(workdir, context=2, horizon=5, episodes=2)
  assert (report['step'], report['episodes'], report['predicted_steps']) == (steps[-1], 2, 5)
  assert 0.0 < report['image_mse'] < 1.0 and np.isfinite(report['reward_mae'])
  assert os.path.exists(report['gif']) and os.path.exists(report['png'])
  with pytest.raises(ValueError, match='need more than --context=20'):
    openloop.openloop_report(workdir, context=20, horizon=5, episodes=1)


def test_action_values_replay_the_demos_exactly(finished_run, tmp_path):
  """`launch.evaluate --action_values` on a finished run: the demos replayed from their reset seeds
  reproduce every stored image at the branch steps; the record says what it measured."""
  import shutil

  from moto_jax.analysis import action_values
  from moto_jax.data import manifest as manifest_lib
  from moto_jax.training import offline_data, restore

  _, workdir, _ = finished_run
  data_dir = offline_data.resolve(restore.load_config(workdir), log=lambda *a: None)
  for f in ep_lib.episode_files(data_dir):  # the debug episodes never succeed: mark them as demos
    ep_lib.save_episode(str(tmp_path / os.path.basename(f)), dict(ep_lib.load_episode(f), bc_weight=1.0))
  with pytest.raises(ValueError, match='no collector seed'):
    action_values.action_values(workdir, data_dir=str(tmp_path), log=lambda s: None)
  shutil.copy(os.path.join(data_dir, manifest_lib.MANIFEST), tmp_path)
  (rec,) = action_values.action_values(
    workdir, every=4, margin=2, draws=1, repeats=2, max_demos=2, envs=5, data_dir=str(tmp_path), log=lambda s: None
  )
  assert rec['replay_ok'] == 1.0  # the seed and the actions give the stored episode, step for step
  assert (rec['demos'], rec['points'], rec['pairs']) == (2, 4, 4)  # t = 0 and 4 of each 10-step demo
  # No debug episode succeeds and the reward is success: every return is 0, every pair a tie.
  assert rec['demo_return'] == 0.0 and rec['true_tie'] == 1.0 and rec['repeat_differ'] == 0.0
  with open(os.path.join(workdir, f'action_values_{rec["step"]}.json')) as f:
    assert json.load(f)['pairs'] == 4


def test_uncertainty_bound_logged_at_every_evaluation(finished_run):
  config, workdir, _ = finished_run
  evals = [r for r in read_metrics(workdir) if r['phase'] == 'eval']
  assert evals and all('bound/estimate' in r for r in evals)
  for r in evals:
    assert np.isfinite(r['bound/estimate']) and r['bound/estimate'] > 0
    assert r['bound/bound'] == pytest.approx(2 * config.agent.penalty_scale * r['bound/estimate'])
    assert r['bound/return_gap'] == pytest.approx(r['bound/expert_return'] - r['bound/agent_return'])
  # The expert and its start seeds are fixed for the run: its return is the same at every evaluation.
  assert len({r['bound/expert_return'] for r in evals}) == 1
  assert os.path.exists(os.path.join(workdir, 'bound.png'))


def test_policy_load_acts_as_the_evaluation_does(finished_run):
  """`moto_jax.Policy.load(workdir)` drives an environment with the checkpoint's acting parameters:
  the same actions, step for step, as the loop's evaluation actor with the same key; `reset()`
  starts over; a wrong image is one clear error."""
  import moto_jax
  from moto_jax import agent, suites
  from moto_jax.training import evaluation, restore

  config, workdir, _ = finished_run
  policy = moto_jax.Policy.load(workdir, seed=3)
  assert policy.action_dim == 4 and policy.image_shape == (64, 64, 3)
  env = suites.make_env(policy.config)
  try:

    def drive():
      policy.reset()
      obs, _ = env.reset(seed=11)
      actions, done = [], False
      while not done:
        actions.append(policy.act(obs['image']))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        done = terminated or truncated
      return np.stack(actions)

    first, again = drive(), drive()
    _, state, _, _, parts = restore.load_run(workdir)
    episode = evaluation.AgentActor(parts).episode(
      env, agent.acting_params(state), 11, jax.random.PRNGKey(3), explore=False
    )
  finally:
    env.close()
  assert first.dtype == np.float32 and first.shape == (config.env.episode_length, 4)
  assert np.abs(first).max() <= 1.0 and np.abs(first).max() > 0
  np.testing.assert_array_equal(first, again)  # reset() starts the same episode over
  np.testing.assert_array_equal(first, episode['action'][1:])  # the evaluation's actions
  with pytest.raises(ValueError, match=r'shape \(32, 32, 3\).*\(64, 64, 3\)'):
    policy.act(np.zeros((32, 32, 3), np.uint8))
