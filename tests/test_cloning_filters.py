"""The filters of the cloning term (`agent.bc_filter`: the Q-filter, advantage weights, n-step
snippets and the clone-everything control), each against a plain loop or hand values, with the
filtered cloning loss and the total actor loss."""

from conftest import debug_config
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moto_jax import agent
from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.agent import cloning

pytestmark = pytest.mark.xdist_group('agent')


def plain_logp(nets, actor, pairs, eps):
  """log pi(a_{i+1} | z_i) [B, T-1] of the tanh-Gaussian, written out in float64."""
  dist = nets.policy(actor, pairs['feat'])
  mean, std = np.asarray(dist.mean, np.float64), np.asarray(dist.std, np.float64)
  a = np.clip(np.asarray(pairs['action'], np.float64), -1 + eps, 1 - eps)
  u = np.arctanh(a)
  return np.sum(-0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2), -1)


def test_q_filter_by_value_and_the_filtered_actor_loss(nets, params, loss_setup):
  """bc_filter 'q': pair i is cloned only where min_j Q_j(z_i, a_{i+1}) >= min_j Q_j(z_i, tanh(mean_i)),
  each twin evaluated on its own and the minimum and comparison taken here; the cloning loss and the
  actor loss then carry that 0/1 weight on each pair."""
  start, pairs, critic, _ = loss_setup
  eps = 1e-2
  b, t = pairs['mask'].shape
  mean = np.asarray(nets.policy(params['actor'], pairs['feat']).mean, np.float64)
  # Each twin's value of the data's and of the policy's own action, then the minimum and the comparison here.
  q_data = np.asarray(nets.q_values(critic, pairs['feat'], pairs['action']))  # [2, B, T-1]
  q_own = np.asarray(nets.q_values(critic, pairs['feat'], jnp.asarray(np.tanh(mean), jnp.float32)))
  keep = np.zeros((b, t))
  for bi in range(b):
    for i in range(t):
      keep[bi, i] = float(min(q_data[0, bi, i], q_data[1, bi, i]) >= min(q_own[0, bi, i], q_own[1, bi, i]))
  got = cloning.q_filter(params['actor'], nets, critic, pairs)
  np.testing.assert_array_equal(np.asarray(got), keep)
  cloned = np.asarray(pairs['mask'] * pairs['bc_weight']) > 0
  assert 0 < keep[cloned].sum() < cloned.sum()  # the filter keeps some cloned pairs and drops others

  logp = plain_logp(nets, params['actor'], pairs, eps)
  mask, weight = np.asarray(pairs['mask']), np.asarray(pairs['bc_weight'])
  want = np.sum(mask * -weight * keep * logp) / np.sum(mask)
  bc, metrics = cloning.cloning_loss(params['actor'], nets, pairs, bc_eps=eps, keep=got)
  np.testing.assert_allclose(bc, want, rtol=1e-4)
  np.testing.assert_allclose(metrics['actor/bc_filter_keep'], keep[cloned].mean(), rtol=1e-6)
  k = keep[cloned]  # 0/1 weights: the effective share is the kept share
  np.testing.assert_allclose(metrics['actor/bc_filter_ess'], k.sum() ** 2 / (k.size * (k**2).sum()), rtol=1e-5)
  np.testing.assert_allclose(metrics['actor/bc_filter_ess'], k.mean(), rtol=1e-5)

  cfg = debug_config(horizon=2, bc_scale=7.0, bc_eps=eps, bc_filter='q').agent
  loss, (metrics, _) = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, jax.random.key(7), **agent.loss_settings(cfg).actor
  )
  np.testing.assert_allclose(loss, metrics['actor/mb_loss'] + 7.0 * want, rtol=1e-4)


def test_q_filter_keeps_the_policys_own_actions_and_is_off_without_a_critic_led_actor(nets, params, loss_setup):
  """Data actions equal to the policy's own: every pair is kept and the loss is Eq. 10's. The filter
  is refused, with one line naming the field, where the actor has no value term."""
  from moto_jax.training import config_check

  start, pairs, critic, _ = loss_setup
  own = nets.policy(params['actor'], pairs['feat']).mode()
  same = {**pairs, 'action': own}
  np.testing.assert_array_equal(np.asarray(cloning.q_filter(params['actor'], nets, critic, same)), 1.0)
  filtered = cloning.cloning_loss(
    params['actor'], nets, same, bc_eps=1e-2, keep=cloning.q_filter(params['actor'], nets, critic, same)
  )[0]
  np.testing.assert_allclose(filtered, cloning.cloning_loss(params['actor'], nets, same, bc_eps=1e-2)[0], rtol=1e-6)
  assert agent.loss_settings(debug_config(mode='bc', bc_filter='q').agent).actor['bc_filter'] == 'none'
  with pytest.raises(config_check.ConfigError, match=r"agent\.bc_filter='q'.*agent\.mode=moto"):
    config_check.validate(debug_config(mode='bc', bc_filter='q'))


def test_advantage_weights_by_value(nets, params, loss_setup):
  """bc_filter 'advantage': A_i = min_j Q_j(z_i, a_{i+1}) - min_j Q_j(z_i, tanh(mean_i)), standardised
  over the cloned pairs, clipped to +-2, exponentiated, divided by the mean over the cloned pairs; the
  cloning loss carries it on each pair, and the result does not change when Q is scaled."""
  start, pairs, critic, _ = loss_setup
  mean = np.asarray(nets.policy(params['actor'], pairs['feat']).mean, np.float64)
  own = jnp.asarray(np.tanh(mean), jnp.float32)
  q_data = np.min(np.asarray(nets.q_values(critic, pairs['feat'], pairs['action']), np.float64), axis=0)
  q_own = np.min(np.asarray(nets.q_values(critic, pairs['feat'], own), np.float64), axis=0)
  adv = q_data - q_own
  cloned = np.asarray(pairs['mask'] * pairs['bc_weight']) > 0
  z = (adv - adv[cloned].mean()) / adv[cloned].std()
  raw = np.exp(np.clip(z, -2, 2))
  want = raw / raw[cloned].mean()
  got = np.asarray(cloning.advantage_weights(params['actor'], nets, critic, pairs))
  np.testing.assert_allclose(got, want, rtol=1e-4)
  assert abs(got[cloned].mean() - 1) < 1e-5 and got[cloned].std() > 0.1
  # Scaling the critics' output (their last layer) scales Q and A: the weights stay.
  scaled = jax.tree_util.tree_map_with_path(
    lambda path, x: 5.0 * x if 'out' in jax.tree_util.keystr(path) else x, critic
  )
  np.testing.assert_allclose(cloning.advantage_weights(params['actor'], nets, scaled, pairs), got, rtol=1e-3)
  cfg = debug_config(horizon=2, bc_scale=7.0, bc_eps=1e-2, bc_filter='advantage').agent
  loss, (metrics, _) = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, jax.random.key(7), **agent.loss_settings(cfg).actor
  )
  logp = plain_logp(nets, params['actor'], pairs, 1e-2)
  mask, weight = np.asarray(pairs['mask']), np.asarray(pairs['bc_weight'])
  np.testing.assert_allclose(
    loss, metrics['actor/mb_loss'] + 7.0 * np.sum(mask * -weight * want * logp) / np.sum(mask), rtol=1e-4
  )
  w = want[cloned]  # how many pairs the weights effectively clone, as a share
  np.testing.assert_allclose(metrics['actor/bc_filter_ess'], w.sum() ** 2 / (w.size * (w**2).sum()), rtol=1e-4)
  assert 0.1 < float(metrics['actor/bc_filter_ess']) < 1.0


def plain_snippet_advantage(v_here, v_next, reward, discount, mask, gamma, steps):
  """A_i = sum_{k<n} gamma^k D r_{i+1+k} + gamma^n D V(z_{i+n}) - V(z_i), n the most steps up to `steps`
  with a transition at every one (the episode or the window ends first), D the discounts' product;
  written as a loop over rows, pairs and steps."""
  b, length = reward.shape
  out = np.zeros((b, length))
  for row in range(b):
    for i in range(length):
      ret, scale, boot = 0.0, 1.0, 0.0
      for k in range(steps):
        j = i + k
        if j >= length or mask[row, j] == 0:
          break
        ret += scale * reward[row, j]
        scale *= gamma * discount[row, j]
        boot = scale * v_next[row, j]  # V(z_{j+1}), the state the k+1 steps reach
      out[row, i] = ret + boot - v_here[row, i]
  return out


@pytest.mark.parametrize('steps', [1, 3, 10])
def test_snippet_advantage_by_value_and_the_widened_cloning_loss(nets, params, loss_setup, steps):
  """bc_filter 'snippets': the n-step advantage against a plain loop (rewards and discounts that
  differ per step, an episode start inside a window, the window's end); the cloning loss then clones
  the successful pairs and the others whose advantage is positive, and says how many of those."""
  start, pairs, critic, _ = loss_setup
  gamma = 0.9
  rng = np.random.default_rng(0)
  pairs = {
    **pairs,
    'reward': jnp.asarray(rng.uniform(0, 1, pairs['reward'].shape), jnp.float32),
    'discount': jnp.asarray(rng.choice([1.0, 0.5], pairs['reward'].shape), jnp.float32),
  }
  v = lambda z: np.min(np.asarray(nets.q_values(critic, z, nets.policy(params['actor'], z).mode()), np.float64), axis=0)
  want = plain_snippet_advantage(
    v(pairs['feat']),
    v(pairs['next_feat']),
    *(np.asarray(pairs[k], np.float64) for k in ('reward', 'discount', 'mask')),
    gamma,
    steps,
  )
  got = np.asarray(cloning.snippet_advantage(params['actor'], nets, critic, pairs, gamma=gamma, steps=steps))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  if steps == 1:  # the one-step form by hand: r_{i+1} + gamma d_{i+1} V(z_{i+1}) - V(z_i)
    one = np.asarray(pairs['reward']) + gamma * np.asarray(pairs['discount']) * v(pairs['next_feat']) - v(pairs['feat'])
    mask = np.asarray(pairs['mask']) > 0
    np.testing.assert_allclose(got[mask], one[mask], rtol=1e-4, atol=1e-4)

  widened, keep = cloning.cloning_inputs(
    params['actor'], nets, critic, pairs, 'snippets', gamma=gamma, snippet_steps=steps
  )
  assert keep is None
  mask, success = np.asarray(pairs['mask']), np.asarray(pairs['bc_weight'])
  weight = np.maximum(success, (want > 0) * mask)
  np.testing.assert_array_equal(np.asarray(widened['bc_weight']), weight)
  rest = (mask * (1 - success)) > 0
  assert rest.sum() == 3  # row 1's first pairs before the episode start: not cloned by Eq. 10
  logp = plain_logp(nets, params['actor'], pairs, 1e-2)
  bc, metrics = cloning.cloning_loss(params['actor'], nets, widened, bc_eps=1e-2)
  np.testing.assert_allclose(bc, np.sum(mask * -weight * logp) / np.sum(mask), rtol=1e-4)
  np.testing.assert_allclose(metrics['actor/snippet_share'], (want[rest] > 0).mean(), rtol=1e-6)
  cfg = debug_config(horizon=2, bc_scale=7.0, bc_eps=1e-2, bc_filter='snippets', snippet_steps=steps, gamma=gamma)
  loss, (metrics, _) = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, jax.random.key(7), **agent.loss_settings(cfg.agent).actor
  )
  np.testing.assert_allclose(
    loss, metrics['actor/mb_loss'] + 7.0 * np.sum(mask * -weight * logp) / np.sum(mask), rtol=1e-4
  )


def test_cloning_all_pairs_is_the_control_without_a_critic(nets, params, loss_setup):
  """bc_filter 'all': every pair with a transition is cloned alike, successful or not, in mode 'bc'
  as in 'moto'; the critic-led filters stay refused in mode 'bc'."""
  from moto_jax.training import config_check

  _, pairs, critic, _ = loss_setup
  every, keep = cloning.cloning_inputs(params['actor'], nets, critic, pairs, 'all')
  assert keep is None
  mask = np.asarray(pairs['mask'])
  np.testing.assert_array_equal(np.asarray(every['bc_weight']), mask)
  logp = plain_logp(nets, params['actor'], pairs, 1e-2)
  bc, metrics = cloning.cloning_loss(params['actor'], nets, every, bc_eps=1e-2)
  np.testing.assert_allclose(bc, np.sum(mask * -logp) / np.sum(mask), rtol=1e-4)
  np.testing.assert_allclose(metrics['actor/snippet_share'], 1.0)
  assert agent.loss_settings(debug_config(mode='bc', bc_filter='all').agent).actor['bc_filter'] == 'all'
  config_check.validate(debug_config(mode='bc', bc_filter='all'))
  with pytest.raises(config_check.ConfigError, match=r"agent\.bc_filter='snippets'.*agent\.mode=moto"):
    config_check.validate(debug_config(mode='bc', bc_filter='snippets'))


def test_snippets_clone_progress_and_not_standing_still(nets, params, loss_setup):
  """With critics that value every state alike (V = c > 0) and no reward, n steps score
  (gamma^n - 1) c < 0: nothing beyond Eq. 10's pairs is cloned. A reward on the way makes the
  snippets that reach it positive, and only those within n steps of it."""
  from conftest import constant_critic

  _, pairs, critic, _ = loss_setup
  flat = constant_critic(critic, 2.0)
  zero = {**pairs, 'reward': jnp.zeros_like(pairs['reward']), 'discount': jnp.ones_like(pairs['discount'])}
  adv = np.asarray(cloning.snippet_advantage(params['actor'], nets, flat, zero, gamma=0.9, steps=3))
  mask = np.asarray(pairs['mask']) > 0
  np.testing.assert_allclose(adv[0], (0.9 ** np.minimum(3, 7 - np.arange(7)) - 1) * 2.0, rtol=1e-5)
  assert (adv[mask] < 0).all()
  paid = np.zeros(zero['reward'].shape, np.float32)
  paid[0, 5] = 1.0  # r_6 on row 0: the transition out of z_5
  paid_pairs = {**zero, 'reward': jnp.asarray(paid)}
  adv = np.asarray(cloning.snippet_advantage(params['actor'], nets, flat, paid_pairs, gamma=0.9, steps=3))
  np.testing.assert_array_equal(adv[0] > 0, [False, False, False, True, True, True, False])
  assert (adv[1][mask[1]] < 0).all()
