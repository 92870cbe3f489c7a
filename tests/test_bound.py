"""The uncertainty bound of App. B (training/bound.py): Eq. 12 by hand on a toy ensemble, and its
shapes and values on the debug networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import metaworld as metaworld_config
from moto_jax import agent
from moto_jax.training import bound


def _toy_step(state, action, key, member):
  """x' = x + a; head 0 predicts (1/2, 1/2), head 1 predicts (sigmoid(x'), sigmoid(-x')): one group of 2."""
  del key, member  # deterministic: the estimate cannot depend on the draws
  x = state['x'] + action[:, 0]
  head0 = jnp.zeros_like(x)[:, None, None] * jnp.ones((1, 1, 2))
  head1 = jnp.stack([x, jnp.zeros_like(x)], -1)[:, None, :]
  return {'x': x}, jnp.stack([head0, head1])  # [M=2, R, G=1, C=2]


def test_eq12_on_a_toy_ensemble_by_hand():
  start = {'x': jnp.array([0.0, 1.0])}
  actions = jnp.array([[[1.0], [1.0]], [[1.0], [-1.0]], [[0.5], [0.0]]])  # [H=3, R=2, 1]
  valid = jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])  # row 1 ends after 2 steps
  gamma = 0.5
  per_row, u = bound.rollout_uncertainty(_toy_step, 2, start, actions, valid, gamma, jax.random.key(0))
  # By hand: u(x') = mean_c std_m log p_m(c) = mean_c |log p_1(c) - log 1/2| / 2 (two heads, ddof 0).
  xs = np.array([[1.0, 2.0], [2.0, 1.0], [2.5, 1.0]])  # x' along each row
  sig = lambda z: 1.0 / (1.0 + np.exp(-z))
  u_hand = (np.abs(np.log(sig(xs)) - np.log(0.5)) + np.abs(np.log(sig(-xs)) - np.log(0.5))) / 4.0
  np.testing.assert_allclose(u, u_hand, rtol=1e-5)
  expect = [u_hand[0, 0] + 0.5 * u_hand[1, 0] + 0.25 * u_hand[2, 0], u_hand[0, 1] + 0.5 * u_hand[1, 1]]
  np.testing.assert_allclose(per_row, expect, rtol=1e-5)
  # Identical heads disagree nowhere: the estimate is 0.
  same = lambda s, a, k, m: (lambda nxt, lg: (nxt, jnp.stack([lg[1], lg[1]])))(*_toy_step(s, a, k, m))
  zero, _ = bound.rollout_uncertainty(same, 2, start, actions, valid, gamma, jax.random.key(0))
  np.testing.assert_allclose(zero, 0.0, atol=1e-7)


def test_discounted_return_skips_the_reset_reward():
  assert bound.discounted_return(np.array([5.0, 1.0, 0.0, 1.0]), 0.5) == pytest.approx(1.0 + 0.25)


def _episode(length, action_dim, value):
  return {
    'image': np.full((length, 64, 64, 3), value, np.uint8),
    'action': np.full((length, action_dim), 0.1 * value, np.float32),
    'reward': np.zeros(length, np.float32),
    'success': np.array(False),
  }


def test_expert_batch_pads_and_rejects_short_episodes():
  b = bound.expert_batch([_episode(6, 4, 1), _episode(4, 4, 2)], starts=2)
  assert b['image'].shape == (2, 6, 64, 64, 3) and b['action'].shape == (2, 6, 4)
  np.testing.assert_array_equal(b['step_valid'], [[1] * 6, [1, 1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(b['is_first'][:, 0], [True, True])
  assert not b['is_first'][:, 1:].any()
  with pytest.raises(ValueError, match='train.bound_starts.*only 3 frames'):
    bound.expert_batch([_episode(3, 4, 1)], starts=2)


def test_estimate_on_the_debug_networks_is_finite_positive_and_follows_the_mask():
  config = metaworld_config.get_config('drawer-open,debug')
  parts = agent.build(config, 4)
  params = parts.nets.init(jax.random.key(0))
  fn = bound.make_estimate_fn(parts.nets, starts=2, gamma=0.99)
  eps = [_episode(8, 4, v) for v in (10, 200)]
  out = fn(params['wm'], bound.expert_batch(eps, 2), jax.random.key(1))
  assert out['estimate'].shape == () and np.isfinite(out['estimate']) and out['estimate'] > 0
  assert 0 < out['disagreement'] < out['estimate']  # a discounted sum of >= 2 positive terms per row
  # A shorter second episode leaves fewer valid steps: its rows sum fewer terms.
  short = fn(params['wm'], bound.expert_batch([eps[0], _episode(5, 4, 200)], 2), jax.random.key(1))
  assert short['estimate'] < out['estimate']


class _IndexNets:
  """Stand-in networks that make Eq. 12's indices visible: the posterior state at frame t is the
  number t (read from the image), a prior step adds the action's first component, and head 1's
  logits are [x', 0] against head 0's uniform ones (as in `_toy_step`)."""

  class rssm:
    ensemble = 2

  def encode(self, wm, image):
    return image[..., 0, 0, :1].astype(jnp.float32)  # [N, L, 1]: the frame index

  def observe(self, wm, embed, action, is_first, key):
    return {'deter': embed, 'stoch': jnp.zeros(embed.shape[:2] + (1, 2))}

  def img_step(self, wm, state, action, key, member):
    x = state['deter'][:, 0] + action[:, 0]
    nxt, logits = _toy_step({'x': x - action[:, 0]}, action, key, member)
    return {'deter': nxt['x'][:, None], 'stoch': state['stoch']}, logits


def test_eq12_starts_from_the_first_k_posteriors_and_steps_with_the_next_actions():
  length, starts, gamma = 6, 2, 0.9
  image = np.zeros((1, length, 64, 64, 3), np.uint8)
  image[0, :, 0, 0, 0] = np.arange(length)  # frame t shows t
  action = (0.1 * np.arange(length) ** 2)[None, :, None].repeat(4, -1).astype(np.float32)  # a_t varies with t
  batch = {
    'image': image,
    'action': action,
    'is_first': np.arange(length)[None] == 0,
    'step_valid': np.ones((1, length), np.float32),
  }
  out = bound.make_estimate_fn(_IndexNets(), starts, gamma)({}, batch, jax.random.key(0))
  sig = lambda z: 1.0 / (1.0 + np.exp(-z))
  u = lambda x: (abs(np.log(sig(x)) - np.log(0.5)) + abs(np.log(sig(-x)) - np.log(0.5))) / 4.0
  a = action[0, :, 0]
  rows = []
  for k in range(starts):  # from z_k, the prior steps with a_{k+1}, ..., a_{k+H}
    x, total = float(k), 0.0
    for h in range(length - starts):
      x += a[k + h + 1]
      total += gamma**h * u(x)
    rows.append(total)
  np.testing.assert_allclose(out['estimate'], np.mean(rows), rtol=1e-5)


def test_the_bound_uses_lambda_u_as_the_losses_do():
  config = metaworld_config.get_config('drawer-open,debug').unlock()
  assert bound.UncertaintyBound(agent.build(config, 4), [1]).penalty_scale == config.agent.penalty_scale == 1.0
  config.agent.mode = 'dreamerv2'  # no penalty in DreamerV2 mode: lambda_u = 0
  assert bound.UncertaintyBound(agent.build(config, 4), [1]).penalty_scale == 0.0
