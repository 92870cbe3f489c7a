"""The suite registry: a third suite added through it alone runs the main job."""

import os

import numpy as np
import pytest

from moto_jax import suites
from moto_jax.data import episodes as ep_lib
from moto_jax.training import config_check, loop, offline_data


@pytest.fixture
def toy():
  suites.register('toy', 'toy_suite:SUITE')
  yield __import__('toy_suite')
  suites.unregister('toy')


def test_registry_names_the_built_in_suites_and_rejects_unknown_ones():
  assert {'metaworld', 'kitchen'} <= set(suites.names())
  with pytest.raises(ValueError, match="Unknown suite .*'nope'.*registered: metaworld, kitchen"):
    suites.get('nope')
  suites.register('bad', 'numpy:pi')
  try:
    with pytest.raises(TypeError, match='numpy:pi is a float, not a moto_jax.suites.Suite'):
      suites.get('bad')
  finally:
    suites.unregister('bad')


def test_config_check_reads_domains_and_tasks_through_the_registry(toy):
  config = toy.config().unlock()
  assert suites.action_dim(config) == 2  # the default reads the env's action space
  config_check.validate(config)  # a registered suite is a valid domain
  config.task = 'fly'
  with pytest.raises(config_check.ConfigError, match="config.task: Unknown toy task 'fly'"):
    config_check.validate(config)
  config.task, config.domain = 'reach', 'elsewhere'
  with pytest.raises(config_check.ConfigError, match="config.domain='elsewhere': expected a registered suite"):
    config_check.validate(config)
  config.domain, config.env.episode_length = 'toy', 60  # the suite's own check (Suite.check_config)
  with pytest.raises(config_check.ConfigError, match=r'^config\.env\.episode_length=60: expected <= 50$'):
    config_check.validate(config)
  with pytest.raises(config_check.ConfigError, match='episode_length=60'):  # and before any data are written
    offline_data.collect_tasks(config, '/nonexistent/never-written')


def test_toy_suite_collects_through_the_shared_collector(toy, tmp_path):
  config = toy.config()
  manifests = offline_data.collect_tasks(config, str(tmp_path), log=lambda s: None)
  m = manifests['reach']
  assert m['episodes'] == 3 and m['transitions'] == 30 and m['success_rate'] == 1.0
  eps = [ep_lib.load_episode(f) for f in ep_lib.episode_files(str(tmp_path / 'reach'))]
  for e in eps:
    assert e['image'].shape == (11, 64, 64, 3) and e['action'].shape == (11, 2)
    assert bool(e['success']) and float(e['bc_weight']) == 1.0 and e['reward'].sum() > 0
  assert os.path.exists(tmp_path / 'reach' / 'contact_sheet.png')
  with pytest.raises(ValueError, match="Unknown toy task 'fly'"):
    offline_data.collect_tasks(config, str(tmp_path), tasks=['fly'])


@pytest.mark.slow
def test_main_job_runs_on_a_toy_suite_from_the_registry_alone(toy, tmp_path):
  c = toy.config().unlock()
  c.data.cache_dir = str(tmp_path / 'cache')
  c.train.offline_steps, c.train.env_steps = 2, 20
  summary = loop.train_and_evaluate(c.lock(), str(tmp_path / 'run'), log=lambda *a: None)
  assert summary['phase'] == 'done' and summary['env_steps'] == 20 and summary['episodes'] == 2
  assert summary['grad_steps'] == 2 + 2 * c.train.updates_per_episode
  assert summary['eval_episodes'] == 1
  online = ep_lib.load_episode(ep_lib.episode_files(str(tmp_path / 'run' / 'episodes'))[0])
  assert online['action'].shape == (11, 2)
  assert np.all(np.abs(online['action']) <= 1.0)
