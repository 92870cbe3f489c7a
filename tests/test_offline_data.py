"""Offline data a run trains on: the seeded subset of App. A.2, and resuming runs recorded before
a config field existed."""

import json

from conftest import job_config
import pytest

from configs import metaworld as mw_config
from moto_jax.training import config_check


@pytest.fixture
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('cache')


def test_offline_subset_is_seeded_recorded_and_checked_on_resume(cache, tmp_path):
  from moto_jax.training import offline_data

  config = job_config(cache).unlock()
  config.data.num_episodes = 3
  config.data.subset_episodes = 2
  directory = offline_data.resolve(config, log=lambda *a: None)
  names = offline_data.subset(config, directory, str(tmp_path), log=lambda *a: None)
  assert len(names) == 2 and len(set(names)) == 2 and names == sorted(names)
  recorded = json.load(open(tmp_path / offline_data.SUBSET_FILE))
  assert recorded['episodes'] == names and recorded['of'] == 3 and recorded['seed'] == config.seed
  assert offline_data.subset(config, directory, str(tmp_path), log=lambda *a: None) == names  # resume
  # The subset is not part of what the dataset's cache key hashes: the same dataset serves every size.
  full = config.copy_and_resolve_references()
  full.data.subset_episodes = 0
  assert offline_data.cache_path(full) == offline_data.cache_path(config)
  assert offline_data.subset(full, directory, str(tmp_path / 'all'), log=lambda *a: None) is None
  # Other seeds draw other subsets (3 choose 2: seeds 0..9 cannot all agree).
  draws = {}
  for seed in range(10):
    other = config.copy_and_resolve_references()
    other.seed = seed
    draws[seed] = offline_data.subset(other, directory, str(tmp_path / f's{seed}'), log=lambda *a: None)
  bad = config.copy_and_resolve_references()
  bad.seed = next(seed for seed, drawn in draws.items() if drawn != names)
  with pytest.raises(ValueError, match='records a different offline subset'):
    offline_data.subset(bad, directory, str(tmp_path), log=lambda *a: None)
  config.data.subset_episodes = 4
  with pytest.raises(ValueError, match='subset_episodes=4, but .* holds only 3 episodes'):
    offline_data.subset(config, directory, str(tmp_path / 'big'), log=lambda *a: None)
  # The store loads only the subset.
  from moto_jax.data.store import EpisodeStore

  store = EpisodeStore(8, image_shape=(64, 64, 3), action_dim=4)
  assert store.load_directory(directory, names=names) == 2


def test_runs_recorded_before_a_field_was_added_resume_when_it_keeps_their_behaviour():
  old = {'data': {'dir': ''}, 'train': {'env_steps': 30}}
  new = {'data': {'dir': '', 'subset_episodes': 0}, 'train': {'env_steps': 30, 'bound_episodes': 10, 'bound_starts': 5}}
  assert config_check.config_diff(old, new) == []
  new['data']['subset_episodes'] = 2  # would train on other data: a difference
  assert config_check.config_diff(old, new) == ['data.subset_episodes']
  # Recorded with the field, any change counts.
  assert config_check.config_diff(new, {**new, 'train': {**new['train'], 'bound_episodes': 0}}) == [
    'train.bound_episodes'
  ]


def test_a_recorded_config_reads_back_with_fields_added_since(tmp_path):
  """An older run's config.json (no agent.balance, agent.value_share, model.compute_dtype) reads back
  with the values that keep what it did, so its checkpoints can still be evaluated."""

  config = mw_config.get_config('drawer-open,debug')
  recorded = config_check.to_dict(config)
  for section, field in (('agent', 'balance'), ('agent', 'value_share'), ('model', 'compute_dtype'), ('env', 'reward')):
    del recorded[section][field]
  (tmp_path / 'config.json').write_text(json.dumps(recorded))
  loaded = config_check.load_recorded(str(tmp_path))
  assert loaded.agent.balance == 'fixed' and loaded.agent.value_share == 0.5 and loaded.model.compute_dtype == 'float32'
  assert loaded.env.reward == 'sparse'
  assert config_check.learning_hash(loaded) == config_check.learning_hash(config)


def test_a_domain_specific_added_field_stays_out_of_other_domains(tmp_path):
  """`env.reward` is MetaWorld's: a Kitchen run's recorded env section reads back without it (its
  environment takes no such argument), and its learning hash is unchanged."""
  from configs import kitchen as kitchen_config

  config = kitchen_config.get_config('mixed,debug')
  assert 'reward' not in config.env
  (tmp_path / 'config.json').write_text(json.dumps(config_check.to_dict(config)))
  loaded = config_check.load_recorded(str(tmp_path))
  assert 'reward' not in loaded.env
  assert config_check.learning_hash(loaded) == config_check.learning_hash(config)


def test_datasets_keep_their_cache_paths_as_fields_are_added():
  """The cache folders of datasets generated with the shipped configs, pinned: a field added to a
  config (config_check.ADDED_FIELDS) at the value that keeps the data must not move them, or every
  user's cached dataset is silently generated again (Kitchen's takes minutes)."""
  import os

  from configs import kitchen as kitchen_config
  from moto_jax.training import offline_data

  fixed = kitchen_config.get_config('mixed,small').unlock()
  fixed.data.task_order = 'fixed'
  paths = {
    'metaworld': mw_config.get_config('drawer-open,small'),
    'kitchen mixed': kitchen_config.get_config('mixed,small'),
    'kitchen partial paper': kitchen_config.get_config('partial,paper'),
    'kitchen fixed order': fixed,
  }
  assert {name: os.path.basename(offline_data.cache_path(c)) for name, c in paths.items()} == {
    'metaworld': 'drawer-open-e85210f170',
    'kitchen mixed': 'mixed-050b3d48cd',
    'kitchen partial paper': 'partial-c9bcaa1af3',
    'kitchen fixed order': 'mixed-655d5290fe',
  }


def test_a_run_resumes_with_another_convolution_form_but_not_another_convolution():
  old = {'model': {'encoder': {'impl': 'xla', 'depth': 8}, 'decoder': {'impl': 'xla', 'kind': 'transpose'}}}
  new = {'model': {'encoder': {'impl': 'patches', 'depth': 8}, 'decoder': {'impl': 'phases', 'kind': 'transpose'}}}
  assert config_check.config_diff(old, new) == []
  new['model']['decoder']['kind'] = 'subpixel'  # another function: a difference
  assert config_check.config_diff(old, new) == ['model.decoder.kind']
