"""Pixel MetaWorld: observations, reward, action repeat, seeding, errors."""

import numpy as np
import pytest

from configs import metaworld as metaworld_config
from moto_jax import suites
from moto_jax.suites.metaworld.env import TASKS, MetaWorldEnv, check_task


@pytest.fixture(scope='module')
def env():
  e = MetaWorldEnv('drawer-open', seed=0, episode_length=20)
  yield e
  e.close()


def test_all_fifty_tasks_listed():
  assert len(TASKS) == 50
  assert 'drawer-open' in TASKS and 'assembly' in TASKS


def test_unknown_task_lists_valid_names():
  with pytest.raises(ValueError, match='Unknown MetaWorld task .*drawer-open'):
    check_task('drawer-opn')
  assert check_task('door-open-v3') == 'door-open'


def test_observation_shape_dtype_range(env):
  obs, info = env.reset(seed=1)
  img = obs['image']
  assert img.shape == (64, 64, 3) and img.dtype == np.uint8
  assert img.max() > img.min()  # not a blank frame
  assert set(obs) == {'image'}  # no proprioception
  assert env.observation_space.contains(obs)
  assert suites.action_dim(metaworld_config.get_config('drawer-open,debug')) == env.action_space.shape[0] == 4


def test_reward_is_exactly_success(env):
  from metaworld.policies import ENV_POLICY_MAP

  expert = ENV_POLICY_MAP['drawer-open-v3']()
  long_env = MetaWorldEnv('drawer-open', seed=0, episode_length=120)
  try:
    obs, info = long_env.reset(seed=3)
    rewards, successes = [], []
    for _ in range(120):
      obs, r, term, trunc, info = long_env.step(expert.get_action(info['state']))
      rewards.append(r)
      successes.append(info['success'])
    assert rewards == [float(s) for s in successes]
    assert set(rewards) <= {0.0, 1.0}
    assert max(rewards) == 1.0  # the expert opens the drawer within 120 steps
    assert trunc and not term
  finally:
    long_env.close()


def test_dense_reward_is_shaped_bounded_and_leaves_success_alone():
  """`reward='dense'`: MetaWorld's shaped reward / 10 averaged over the repeated steps, in [0, 1],
  paying before success; the same actions give the same states and the same success flags as sparse."""
  from metaworld.policies import ENV_POLICY_MAP

  expert = ENV_POLICY_MAP['drawer-open-v3']()
  runs = {}
  for kind in ('sparse', 'dense'):
    e = MetaWorldEnv('drawer-open', seed=0, episode_length=120, reward=kind)
    try:
      obs, info = e.reset(seed=3)
      rewards, successes, states = [], [], []
      for _ in range(120):
        obs, r, _, _, info = e.step(expert.get_action(info['state']))
        rewards.append(r)
        successes.append(info['success'])
        states.append(info['state'])
      runs[kind] = np.array(rewards), np.array(successes), np.array(states)
    finally:
      e.close()
  dense, success, states = runs['dense']
  np.testing.assert_array_equal(success, runs['sparse'][1])
  np.testing.assert_array_equal(states, runs['sparse'][2])
  assert dense.min() >= 0.0 and dense.max() <= 1.0
  first = int(np.argmax(success))
  assert success[first] == 1.0 and np.all(dense[:first] > 0.0)  # shaped: it pays on the way
  assert dense[:first].min() < 0.5 * dense[first:].max()  # and more near the goal than far from it
  assert len(set(np.round(dense[:first], 6))) > 10  # not two levels, as the sparse reward is
  with pytest.raises(ValueError, match="reward='shaped'"):
    MetaWorldEnv('drawer-open', reward='shaped')


def test_dense_reward_has_its_own_dataset_and_sparse_keeps_its_path():
  from moto_jax.training import offline_data

  config = metaworld_config.get_config('drawer-open,debug')
  sparse = offline_data.cache_path(config)
  unlocked = config.copy_and_resolve_references()
  with unlocked.unlocked():
    del unlocked.env['reward']
  assert offline_data.cache_path(unlocked) == sparse  # datasets made before the field keep their path
  dense = config.copy_and_resolve_references()
  dense.env.reward = 'dense'
  assert offline_data.cache_path(dense) != sparse


def test_action_repeat_and_episode_length(env):
  env.reset(seed=0)
  start = env._env.curr_path_length
  for i in range(20):
    _, _, _, trunc, _ = env.step(np.zeros(4))
    assert trunc == (i == 19)
  assert env._env.curr_path_length - start == 20 * env.action_repeat == 40


def test_same_seed_same_images_different_seed_differs(env):
  def run(seed):
    obs, _ = env.reset(seed=seed)
    frames = [obs['image']]
    rng = np.random.default_rng(0)
    for _ in range(5):
      frames.append(env.step(rng.uniform(-1, 1, 4))[0]['image'])
    return np.stack(frames)

  a = run(7)
  env.reset(seed=123)  # whatever happens in between
  env.step(np.ones(4))
  b = run(7)
  c = run(8)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a[0].astype(int) - c[0].astype(int)).sum() > 0


def test_settings_recorded(env):
  s = env.settings()
  assert s['task'] == 'drawer-open' and s['action_repeat'] == 2
  assert s['render']['quality'] == 'fast' and s['render']['size'] == 64


def test_bad_render_quality_and_camera():
  with pytest.raises(ValueError, match='render_quality'):
    MetaWorldEnv('drawer-open', render_quality='ultra')
  with pytest.raises(ValueError, match="camera='nope'"):
    MetaWorldEnv('drawer-open', camera='nope')


def test_corner_cameras_are_flipped_upright():
  from moto_jax.suites.rendering import FastRenderer

  e = MetaWorldEnv('drawer-open', seed=0, camera='corner')
  try:
    e.reset(seed=0)
    assert e.renderer.settings()['flip']
    raw = FastRenderer(e._env.model, e._env.data, 64, 'corner', flip=False)
    np.testing.assert_array_equal(e.render(), raw.render()[::-1, ::-1])
    raw.close()
  finally:
    e.close()


def test_long_preset_is_small_with_ten_times_the_online_steps():
  small, long = (metaworld_config.get_config(f'coffee-push,{p}').to_dict() for p in ('small', 'long'))
  assert (small['train']['env_steps'], long['train']['env_steps']) == (1_000, 10_000)
  assert long['train']['env_steps'] // long['env']['episode_length'] == 50  # episodes online
  assert (small['train']['eval_every_episodes'], long['train']['eval_every_episodes']) == (5, 10)
  for section in ('train', 'preset'):
    small.pop(section), long.pop(section)
  assert small == long  # networks, agent, data and env as in `small`
