"""The main job's parts alone, without a run: config checks and overrides, the non-finite guard,
the metrics log, checkpoints, open-loop tiles and the fault points the crash tests use."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import metaworld as mw_config
from moto_jax.training import checkpoint as ckpt_lib
from moto_jax.training import config_check, loop
from moto_jax.training.logger import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bad_config_fails_before_compile(tmp_path):
  c = mw_config.get_config('drawer-open,debug').unlock()
  c.model.decoder.kind = 'deconv'
  with pytest.raises(config_check.ConfigError, match=r"model\.decoder\.kind='deconv'"):
    loop.train_and_evaluate(c, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')  # nothing written
  c.model.decoder.kind = 'subpixel'
  c.task = 'drawer-close-please'
  with pytest.raises(config_check.ConfigError, match='Unknown MetaWorld task'):
    config_check.validate(c)
  c.task = 'drawer-open'
  c.train.seq_len = 50
  with pytest.raises(config_check.ConfigError, match='train.seq_len=50'):
    config_check.validate(c)
  c.train.seq_len = 8
  c.agent.bc_final = 0.0  # a cloning weight decayed to nothing: "No BC" has its own switch
  with pytest.raises(config_check.ConfigError, match=r'agent\.bc_final=0\.0: expected a value in \(0, 1\]'):
    config_check.validate(c)
  c.agent.bc_final = 1.0
  c.agent.snippet_steps = 0
  with pytest.raises(config_check.ConfigError, match=r'agent\.snippet_steps=0: expected an integer >= 1'):
    config_check.validate(c)
  c.agent.snippet_steps = 10
  c.agent.bc_filter = 'snippet'
  with pytest.raises(config_check.ConfigError, match=r"agent\.bc_filter='snippet': expected .*\"snippets\" or \"all\""):
    config_check.validate(c)
  c.agent.bc_filter = 'none'
  c.env.reward = 'shaped'
  with pytest.raises(config_check.ConfigError, match=r"env\.reward='shaped': expected one of 'sparse', 'dense'"):
    config_check.validate(c)
  c.env.reward = 'sparse'
  c.env.episode_length = 245  # 490 simulator steps at action repeat 2 and 10 settle steps: the limit
  config_check.validate(c)
  c.env.episode_length = 250  # past it
  with pytest.raises(config_check.ConfigError, match=r'env\.episode_length=250: with env\.action_repeat=2 .* limit'):
    config_check.validate(c)


def test_every_shipped_config_passes_its_checks():
  from configs import common, gym, kitchen

  for module, tasks in ((mw_config, ('drawer-open', 'coffee-push')), (kitchen, kitchen.TASKS), (gym, ('',))):
    for task in tasks:
      for preset in common.PRESETS:
        config_check.validate(module.get_config(','.join(filter(None, (task, preset)))))


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('env.camera', 'top', r"config\.env\.camera='top': expected one of 'authors', 'rpl', 'd5rl'"),
    ('data.task_order', 'sorted', r"config\.data\.task_order='sorted': expected one of 'random', 'fixed'"),
    ('data.bc_tasks', ('kettel',), r"config\.data\.bc_tasks=\('kettel',\): \['kettel'\] are not target tasks"),
    ('data.fail_prob', 1.5, r'config\.data\.fail_prob=1\.5: expected a value in \[0, 1\]'),
    ('data.workers', 0, r'config\.data\.workers=0: expected >= 1'),
    ('data.waypoint_noise', -0.01, r'config\.data\.waypoint_noise=-0\.01: expected >= 0'),
    ('env.mesh_faces', -1, r'config\.env\.mesh_faces=-1: expected >= 0'),
  ],
)
def test_kitchen_fields_fail_before_any_work(tmp_path, field, value, message):
  """The fields only Kitchen reads are checked by its suite (`Suite.check_config`) before the data
  are generated, as one line naming the field, not as a traceback from a generator process."""
  from configs import kitchen as kitchen_config

  c = kitchen_config.get_config('mixed,debug').unlock()
  config_check.validate(c)  # the shipped values pass
  section, leaf = field.split('.')
  c[section][leaf] = value
  with pytest.raises(config_check.ConfigError, match=message):
    loop.train_and_evaluate(c, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')


def test_benchmark_overrides_parse_as_the_field_type():
  c = mw_config.get_config('drawer-open,debug').unlock()
  config_check.override(c, 'agent.actor_steps=2')
  config_check.override(c, 'bc_scale=3', prefix='agent')
  config_check.override(c, 'agent.mode=dreamerv2')
  config_check.override(c, 'agent.data_critic_loss=False')  # not bool('False')
  assert (c.agent.actor_steps, c.agent.mode, c.agent.data_critic_loss) == (2, 'dreamerv2', False)
  assert c.agent.bc_scale == 3.0 and isinstance(c.agent.bc_scale, float)
  with pytest.raises(config_check.ConfigError, match="agent has no field 'bc_scal'; did you mean 'bc_scale'"):
    config_check.override(c, 'agent.bc_scal=1')
  with pytest.raises(config_check.ConfigError, match=r"config.agent.actor_steps='x': expected a int"):
    config_check.override(c, 'agent.actor_steps=x')
  with pytest.raises(config_check.ConfigError, match='expected FIELD=VALUE'):
    config_check.override(c, 'agent.actor_steps')


def test_skip_nonfinite_keeps_state():
  import jax
  import jax.numpy as jnp

  from moto_jax.agent.update import skip_nonfinite

  def step(state, batch, rng):
    del rng
    new = state * batch
    return new, {'loss': jnp.sum(new)}

  f = jax.jit(skip_nonfinite(step))
  key = jax.random.PRNGKey(0)
  s, m = f(jnp.ones(3), jnp.array([1.0, np.nan, 2.0]), key)
  np.testing.assert_array_equal(s, np.ones(3))
  assert float(m['nonfinite']) == 1.0
  s, m = f(jnp.ones(3), jnp.array([1.0, 2.0, 3.0]), key)
  np.testing.assert_array_equal(s, [1.0, 2.0, 3.0])
  assert float(m['nonfinite']) == 0.0


def test_unknown_config_field_is_named_in_one_line(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.main',
      '--config=configs/metaworld.py:drawer-open,debug',
      f'--workdir={tmp_path / "run"}',
      '--config.agent.bc_scal=0',
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode != 0
  assert 'Traceback' not in out.stderr
  assert "--config.agent.bc_scal: the config has no field 'bc_scal'; did you mean 'bc_scale'?" in out.stderr
  assert not os.path.exists(tmp_path / 'run')  # nothing written


def test_metrics_log_tolerates_a_torn_last_line(tmp_path):
  from moto_jax.training.logger import MetricWriter

  w = MetricWriter(str(tmp_path), tensorboard=False)
  w.write(1, 'offline', {'a': 1.0})
  w.write(2, 'offline', {'a': 2.0})
  w.close()
  path = tmp_path / 'metrics.jsonl'
  data = path.read_bytes()
  path.write_bytes(data[:-7])  # a full disk cut the last record
  assert [r['step'] for r in read_metrics(str(tmp_path))] == [1]
  w = MetricWriter(str(tmp_path), tensorboard=False)  # a resume appends on a fresh line
  w.write(3, 'offline', {'a': 3.0})
  w.close()
  assert [r['step'] for r in read_metrics(str(tmp_path))] == [1, 3]
  path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(ValueError, match='metrics.jsonl:2'):
    read_metrics(str(tmp_path))


def test_interrupted_checkpoint_temporaries_removed_by_the_writer(tmp_path):
  import jax.numpy as jnp

  workdir = str(tmp_path)
  ckpt = ckpt_lib.Checkpointer(workdir, clean_temporary=True)
  ckpt.save(3, {'w': jnp.ones(2)}, ckpt_lib.Counters(grad_steps=3))
  ckpt.close()
  stale = tmp_path / 'checkpoints' / '7.orbax-checkpoint-tmp-1700000000'  # what a kill mid-save leaves
  stale.mkdir()
  (stale / 'partial').write_text('x')
  reader = ckpt_lib.Checkpointer(workdir)  # a reader (evaluation) leaves it alone
  assert stale.exists() and reader.latest_step() == 3
  reader.close()
  writer = ckpt_lib.Checkpointer(workdir, clean_temporary=True)
  assert not stale.exists() and writer.removed_temporary == [stale.name] and writer.latest_step() == 3
  assert writer.read_counters()['grad_steps'] == 3
  writer.close()


def test_checkpoint_without_averaged_actor_restores_with_it_equal_to_the_actor(tmp_path):
  """A run saved before TrainState had `actor_ema` resumes: the average starts at the actor."""
  import jax

  from moto_jax import agent

  config = mw_config.get_config('drawer-open,debug')
  state = agent.create_train_state(agent.build(config, 4), jax.random.key(0))
  state = state.replace(params={**state.params, 'actor': jax.tree.map(lambda x: x + 1.0, state.params['actor'])})
  old = {
    'step': state.step,
    'params': state.params,
    'target_critic': state.target_critic,
    'opt_state': state.opt_state,
  }  # the older state's fields
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  ckpt.save(5, old, ckpt_lib.Counters(grad_steps=5))
  restored, counters, step = ckpt.restore(agent.create_train_state(agent.build(config, 4), jax.random.key(1)))
  ckpt.close()
  assert step == 5 and counters.grad_steps == 5
  for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(restored.actor_ema), jax.tree.leaves(state.params['actor'])):
    np.testing.assert_array_equal(a, b)


def test_openloop_tiles_truth_prediction_and_error():
  from moto_jax.analysis import openloop

  truth = np.zeros((2, 3, 4, 5, 3), np.float32)
  pred = np.full((2, 3, 4, 5, 3), 0.25, np.float32)
  frames = openloop.tile(truth, pred)
  assert frames.shape == (3, 2 * 4, 3 * 5, 3) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frames[:, :, :5], 0)  # truth
  np.testing.assert_array_equal(frames[:, :, 5:], int(0.25 * 255))  # prediction, |error|


def test_fault_points_signal_the_process_at_the_chosen_point(monkeypatch):
  """MOTO_FAULT (the crash tests' hook): the signal goes out at the named point and nowhere else."""
  from moto_jax.training import stopping

  monkeypatch.setattr(stopping, '_fired', [])
  monkeypatch.setenv(stopping.FAULT_ENV, 'episode=2:INT')
  with stopping._StopRequested() as stop:
    stopping.fault_point('episode', 1)
    stopping.fault_point('grad_step', 2)
    assert not stop.requested
    stopping.fault_point('episode', 2)
    assert stop.requested
    stopping.fault_point('episode', 2)  # once per process: a second signal would stop the checkpoint save
  monkeypatch.setattr(stopping, '_fired', [])
  monkeypatch.setenv(stopping.FAULT_ENV, 'grad_step=x:KILL')
  with pytest.raises(ValueError, match="MOTO_FAULT='grad_step=x:KILL': expected <point>=<n>"):
    stopping.fault_point('grad_step', 1)
