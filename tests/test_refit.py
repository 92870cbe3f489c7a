"""Extra actor-critic steps: K per update (agent.actor_steps) and on a frozen world model (agent/refit.py).

Apart from test_agent.py, whose module fixture allows one trace of `update.train_step`."""

from conftest import ACTION_DIM, debug_config, synthetic_batch
import jax
import numpy as np
import optax
import pytest

from moto_jax import agent
from moto_jax.agent import refit as refit_lib


def episodes(n=3, length=12, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    out.append(
      {
        'image': rng.integers(0, 256, (length + i, 64, 64, 3), dtype=np.uint8),
        'action': np.tanh(rng.normal(size=(length + i, ACTION_DIM))).astype(np.float32),
        'reward': rng.normal(size=length + i).astype(np.float32),
        'discount': np.ones(length + i, np.float32),
        'is_first': np.arange(length + i) == 0,
        'bc_weight': np.float32(i != 1),
      }
    )
  return out


def test_episode_arrays_pad_and_record_lengths():
  arrays = refit_lib.episode_arrays(episodes())
  assert arrays['image'].shape == (3, 14, 64, 64, 3) and arrays['action'].shape == (3, 14, ACTION_DIM)
  np.testing.assert_array_equal(arrays['length'], [12, 13, 14])
  # Each step's weight, zero on the padding; an episode with per-step weights (segment cloning) keeps them.
  np.testing.assert_array_equal(arrays['bc_weight'][:, 0], [1, 0, 1])
  np.testing.assert_array_equal(arrays['bc_weight'].sum(1), [12, 0, 14])
  eps = episodes()
  eps[1]['bc_steps'] = (np.arange(13) < 5).astype(np.float32)
  np.testing.assert_array_equal(refit_lib.episode_arrays(eps)['bc_weight'][1], (np.arange(14) < 5).astype(np.float32))
  assert not arrays['image'][0, 12:].any() and arrays['is_first'][:, 0].all()
  padded = refit_lib.episode_arrays(episodes(), capacity=5)
  assert padded['image'].shape == (5, 14, 64, 64, 3) and int(padded['count']) == 3
  np.testing.assert_array_equal(padded['length'], [12, 13, 14, 0, 0])
  with pytest.raises(ValueError, match='capacity=2 is below the 3 episodes'):
    refit_lib.episode_arrays(episodes(), capacity=2)


def test_windows_cover_every_step_and_skip_padding():
  lengths = jax.numpy.asarray([12, 40, 0, 0], jax.numpy.int32)
  ep, idx = jax.jit(refit_lib.sample_windows, static_argnums=(2, 3))(jax.random.key(0), lengths, 4000, 8, 2)
  ep, idx = np.asarray(ep), np.asarray(idx)
  assert set(ep) == {0, 1}  # padding rows (length 0) never drawn
  assert (idx >= 0).all() and (idx < np.asarray(lengths)[ep][:, None]).all()
  assert (np.diff(idx, axis=1) == 1).all()
  hits = np.bincount(idx[ep == 1].ravel(), minlength=40)
  assert hits.min() > 0.4 * hits.mean()  # the reset and the last step included


def test_refit_trains_actor_and_critics_only_and_fits_the_demos():
  config = debug_config(actor_steps=2, bc_scale=100.0)
  config.train.refit_steps = 30
  refit = refit_lib.make_refit_fn(agent.build(config, ACTION_DIM))
  state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0))
  before = jax.tree.map(np.array, state)
  arrays = refit_lib.episode_arrays(episodes())
  state, first = refit(state, arrays, jax.random.key(1))
  for a, b in zip(jax.tree.leaves(before.params['wm']), jax.tree.leaves(state.params['wm'])):
    np.testing.assert_array_equal(a, b)  # the world model is frozen
  assert int(state.step) == int(before.step)
  count = lambda part: {int(v) for _, v in optax.tree_utils.tree_get_all_with_path(state.opt_state[part], 'count')}
  assert count('actor') == {60} and count('critic') == {60} and count('wm') == {0}
  assert not np.allclose(before.params['actor']['mlp']['out']['kernel'], state.params['actor']['mlp']['out']['kernel'])
  assert all(np.isfinite(v) for v in jax.tree.leaves(first))
  _, second = refit(state, arrays, jax.random.key(2))
  assert second['actor/bc_loglik'] > first['actor/bc_loglik'] + 0.1  # the demos' actions get likelier


def test_actor_steps_take_that_many_actor_and_critic_steps():
  """agent.actor_steps = K: one world-model step, then K actor and K critic Adam steps (update.py)."""
  batch = synthetic_batch(0, 2, 8)
  config = debug_config(actor_steps=2)
  update = agent.make_update_fn(agent.build(config, ACTION_DIM))
  state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0))
  state, metrics = update(state, batch, jax.random.key(7))
  count = lambda part: [int(v) for _, v in optax.tree_utils.tree_get_all_with_path(state.opt_state[part], 'count')]
  assert set(count('wm')) == {1} and set(count('actor')) == {2} and set(count('critic')) == {2}
  assert int(state.step) == 1
  assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
