"""The equations the cloning/critic balance acts through, each against a plain loop written apart.

Imagination's penalised rewards (Eqs. 2-4) row by row, value expansion (Eqs. 5, 7) by a brute-force
double loop at H = 1..7, the critic targets with twin critics that differ and depend on the action
(Eqs. 7-9), Eq. 10 by value with an episode start inside the window and mixed weights, and the total
actor loss; the Q-filter, advantage weights and n-step snippets of cloning (`agent.bc_filter`) likewise.
"""

from conftest import debug_config, synthetic_batch
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moto_jax import agent
from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.agent import cloning, returns
from moto_jax.networks import rssm as rssm_lib

pytestmark = pytest.mark.xdist_group('agent')

N = 5  # imagination starts


def brute_force_expansion(reward, value, gamma):
  """V^h(z_k) = sum_{i<h} gamma^i r_{k+i} + gamma^h v_{k+h}; vhat_0 = mean_{h=0..H} V^h(z_0);
  target_k = mean_{h=1..H-k} V^h(z_k). Plain loops over k, h and i."""
  horizon, n = reward.shape
  vhat0 = np.zeros(n)
  target = np.zeros((horizon, n))
  for col in range(n):

    def v(k, h):
      return sum(gamma**i * reward[k + i, col] for i in range(h)) + gamma**h * value[k + h, col]

    vhat0[col] = np.mean([v(0, h) for h in range(horizon + 1)])
    for k in range(horizon):
      target[k, col] = np.mean([v(k, h) for h in range(1, horizon - k + 1)])
  return vhat0, target


@pytest.mark.parametrize('horizon', range(1, 8))
def test_value_expansion_matches_brute_force(horizon):
  rng = np.random.default_rng(horizon)
  reward = rng.normal(size=(horizon, 3)).astype(np.float32)
  value = rng.normal(size=(horizon + 1, 3)).astype(np.float32) * 5
  vhat0, target = returns.value_expansion_targets(jnp.asarray(reward), jnp.asarray(value), gamma=0.9)
  want_vhat0, want_target = brute_force_expansion(reward.astype(np.float64), value.astype(np.float64), 0.9)
  np.testing.assert_allclose(vhat0, want_vhat0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(target, want_target, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope='module')
def setup(nets, params):
  """A start state, real pairs with an episode start inside a window and mixed BC weights, and
  critics scaled up so that the twins differ clearly and depend on the action."""
  r = nets.rssm
  start = {
    'deter': jax.random.normal(jax.random.key(2), (N, r.deter)),
    'stoch': jax.nn.one_hot(jax.random.randint(jax.random.key(1), (N, r.groups), 0, r.classes), r.classes),
  }
  batch = synthetic_batch(0, 2, 8)
  batch['is_first'][1, 4] = True  # row 1: an episode starts at step 4 (pair 3 has no transition)
  batch['bc_weight'] = np.array([[1.0] * 8, [0.0] * 4 + [1.0] * 4], np.float32)
  feat = jax.random.normal(jax.random.key(3), (2, 8, nets.feat_dim))
  pairs = agent.real_pairs(feat, batch)
  critic = jax.tree.map(lambda x: 3.0 * x, params['critic'])
  target_critic = jax.tree.map(lambda x: 2.0 * x, params['critic'])
  return start, pairs, critic, target_critic


def test_critics_differ_and_depend_on_the_action(nets, setup):
  _, pairs, critic, _ = setup
  q = nets.q_values(critic, pairs['feat'], pairs['action'])
  q_other = nets.q_values(critic, pairs['feat'], -pairs['action'])
  assert float(jnp.min(jnp.abs(q[0] - q[1]))) > 1e-4
  assert float(jnp.min(jnp.abs(q - q_other))) > 1e-5


def test_imagined_rewards_row_by_row(nets, params, setup):
  """Each penalised reward is r^(z_{k+1}) - lambda_u * u(z_k, a_k), with u the mean over (g, c) of
  the std over the M prior heads of the log-probabilities of z_{k+1} (Eq. 2), recomputed for every
  row and step from the rollout's own states and actions."""
  start, _, critic, _ = setup
  cfg = debug_config(horizon=3, penalty_scale=2.5).agent
  s = agent.loss_settings(cfg).actor
  _, (metrics, rollout) = ac_loss.value_loss(
    params['actor'],
    nets,
    params['wm'],
    critic,
    start,
    jax.random.key(7),
    horizon=s['horizon'],
    targets=s['targets'],
    penalty_scale=s['penalty_scale'],
    entropy_scale=0.0,
  )
  traj = nets.imagine(params['wm'], start, params['actor'], 3, jax.random.split(jax.random.key(7))[0])
  np.testing.assert_allclose(rollout['feat'], traj['feat'], rtol=1e-6)
  variables = {'params': params['wm']['rssm']}
  for k in range(3):
    for n in range(N):
      deter = nets.rssm.apply(
        variables,
        traj['deter'][k, n : n + 1],
        traj['stoch'][k, n : n + 1],
        traj['action'][k, n : n + 1],
        method=rssm_lib.RSSM.core,
      )
      np.testing.assert_allclose(deter[0], traj['deter'][k + 1, n], rtol=1e-4, atol=1e-5)
      heads = np.asarray(nets.rssm.apply(variables, deter, method=rssm_lib.RSSM.prior_logits), np.float64)[:, 0]
      u = np.mean(np.std(heads, axis=0))  # members' std of log-probs, then the mean over (g, c)
      r_hat = float(nets.predict_reward(params['wm'], traj['feat'][k + 1, n : n + 1])[0])
      np.testing.assert_allclose(rollout['reward'][k, n], r_hat - 2.5 * u, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics['actor/imag_reward'], np.mean(rollout['reward']), rtol=1e-5)


def test_critic_targets_with_twin_critics(nets, params, setup):
  """Eq. 7 from the min over the twin target critics at the rollout's own (z, a); Eq. 8 from
  r_{i+1} + gamma d_{i+1} min_j Qbar_j(z_{i+1}, a'), a' ~ pi(z_{i+1}) drawn with the loss's key;
  L_critic = sum_j mean (Q_j - y)^2 over each set, masked where a window holds an episode start."""
  start, pairs, critic, target_critic = setup
  cfg = debug_config(horizon=3, penalty_scale=1.0).agent
  s = agent.loss_settings(cfg)
  _, (_, rollout) = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, jax.random.key(7), **s.actor
  )
  key = jax.random.key(9)
  loss, metrics = ac_loss.critic_loss(critic, nets, target_critic, params['actor'], rollout, pairs, key, **s.critic)

  reward = np.asarray(rollout['reward'], np.float64)
  qbar = np.asarray(nets.q_values(target_critic, rollout['feat'], rollout['action']), np.float64)
  _, target = brute_force_expansion(reward, qbar.min(0), cfg.gamma)
  q_imag = np.asarray(nets.q_values(critic, rollout['feat'][:-1], rollout['action'][:-1]), np.float64)
  model_loss = sum(np.mean((q_imag[j] - target) ** 2) for j in range(2))
  np.testing.assert_allclose(metrics['critic/model_loss'], model_loss, rtol=1e-4)

  a_next = nets.policy(params['actor'], pairs['next_feat']).sample(key)
  qbar_next = np.asarray(nets.q_values(target_critic, pairs['next_feat'], a_next), np.float64).min(0)
  q_data = np.asarray(nets.q_values(critic, pairs['feat'], pairs['action']), np.float64)
  mask = np.asarray(pairs['mask'])
  assert mask[1, 3] == 0 and mask.sum() == 2 * 7 - 1
  y = np.zeros_like(mask)
  data_loss = np.zeros(2)
  for b in range(2):
    for i in range(7):
      y[b, i] = float(pairs['reward'][b, i]) + cfg.gamma * float(pairs['discount'][b, i]) * qbar_next[b, i]
      for j in range(2):
        data_loss[j] += mask[b, i] * (q_data[j, b, i] - y[b, i]) ** 2
  data_loss = data_loss.sum() / mask.sum()
  np.testing.assert_allclose(metrics['critic/target_data'], (y * mask).sum() / mask.sum(), rtol=1e-4)
  np.testing.assert_allclose(metrics['critic/data_loss'], data_loss, rtol=1e-4)
  np.testing.assert_allclose(loss, model_loss + data_loss, rtol=1e-4)


def test_cloning_loss_by_value_and_the_total_actor_loss(nets, params, setup):
  """Eq. 10: mean over the window's pairs with a transition of -bc_weight_i log pi(a_{i+1} | z_i),
  the tanh-Gaussian log-density written out (clip to 1 - eps, atanh, Gaussian, minus log(1 - a^2));
  then L_pi = L_MB + beta_bc L_BC."""
  start, pairs, critic, _ = setup
  eps = 1e-2
  dist = nets.policy(params['actor'], pairs['feat'])
  mean, std = np.asarray(dist.mean, np.float64), np.asarray(dist.std, np.float64)
  action = np.asarray(pairs['action'], np.float64)
  mask, weight = np.asarray(pairs['mask']), np.asarray(pairs['bc_weight'])
  assert weight[1, :4].sum() == 0 and weight[1, 4:].min() == 1  # mixed weights within a row
  total, count = 0.0, 0.0
  for b in range(2):
    for i in range(7):
      a = np.clip(action[b, i], -1 + eps, 1 - eps)
      u = np.arctanh(a)
      logp = np.sum(
        -0.5 * ((u - mean[b, i]) / std[b, i]) ** 2 - np.log(std[b, i]) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2)
      )
      total += mask[b, i] * (-weight[b, i] * logp)
      count += mask[b, i]
  bc, _ = cloning.cloning_loss(params['actor'], nets, pairs, bc_eps=eps)
  np.testing.assert_allclose(bc, total / count, rtol=1e-4)

  cfg = debug_config(horizon=2, bc_scale=7.0, bc_eps=eps).agent
  loss, (metrics, _) = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, jax.random.key(7), **agent.loss_settings(cfg).actor
  )
  np.testing.assert_allclose(loss, metrics['actor/mb_loss'] + 7.0 * total / count, rtol=1e-4)
  np.testing.assert_allclose(metrics['actor/bc_loss'], total / count, rtol=1e-4)
  bc_mode = debug_config(horizon=2, bc_scale=7.0, bc_eps=eps, mode='bc').agent
  loss_bc, _ = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, jax.random.key(7), **agent.loss_settings(bc_mode).actor
  )
  np.testing.assert_allclose(loss_bc, 7.0 * total / count, rtol=1e-4)


def plain_logp(nets, actor, pairs, eps):
  """log pi(a_{i+1} | z_i) [B, T-1] of the tanh-Gaussian, written out in float64."""
  dist = nets.policy(actor, pairs['feat'])
  mean, std = np.asarray(dist.mean, np.float64), np.asarray(dist.std, np.float64)
  a = np.clip(np.asarray(pairs['action'], np.float64), -1 + eps, 1 - eps)
  u = np.arctanh(a)
  return np.sum(-0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2), -1)


def test_q_filter_by_value_and_the_filtered_actor_loss(nets, params, setup):
  """bc_filter 'q': pair i is cloned only where min_j Q_j(z_i, a_{i+1}) >= min_j Q_j(z_i, tanh(mean_i)),
  each twin evaluated on its own and the minimum and comparison taken here; the cloning loss and the
  actor loss then carry that 0/1 weight on each pair."""
  start, pairs, critic, _ = setup
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


def test_q_filter_keeps_the_policys_own_actions_and_is_off_without_a_critic_led_actor(nets, params, setup):
  """Data actions equal to the policy's own: every pair is kept and the loss is Eq. 10's. The filter
  is refused, with one line naming the field, where the actor has no value term."""
  from moto_jax.training import config_check

  start, pairs, critic, _ = setup
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


def test_advantage_weights_by_value(nets, params, setup):
  """bc_filter 'advantage': A_i = min_j Q_j(z_i, a_{i+1}) - min_j Q_j(z_i, tanh(mean_i)), standardised
  over the cloned pairs, clipped to +-2, exponentiated, divided by the mean over the cloned pairs; the
  cloning loss carries it on each pair, and the result does not change when Q is scaled."""
  start, pairs, critic, _ = setup
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
def test_snippet_advantage_by_value_and_the_widened_cloning_loss(nets, params, setup, steps):
  """bc_filter 'snippets': the n-step advantage against a plain loop (rewards and discounts that
  differ per step, an episode start inside a window, the window's end); the cloning loss then clones
  the successful pairs and the others whose advantage is positive, and says how many of those."""
  start, pairs, critic, _ = setup
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


def test_cloning_all_pairs_is_the_control_without_a_critic(nets, params, setup):
  """bc_filter 'all': every pair with a transition is cloned alike, successful or not, in mode 'bc'
  as in 'moto'; the critic-led filters stay refused in mode 'bc'."""
  from moto_jax.training import config_check

  _, pairs, critic, _ = setup
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


def test_snippets_clone_progress_and_not_standing_still(nets, params, setup):
  """With critics that value every state alike (V = c > 0) and no reward, n steps score
  (gamma^n - 1) c < 0: nothing beyond Eq. 10's pairs is cloned. A reward on the way makes the
  snippets that reach it positive, and only those within n steps of it."""
  from conftest import constant_critic

  _, pairs, critic, _ = setup
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


def test_perturbed_transitions_and_their_critic_loss_by_value(nets, params, setup):
  """`agent.critic_action_noise`: from every imagined state z_k (k < H), the action a_k + noise,
  clipped to [-1, 1]; one GRU step, s' from a prior head, r~ = r^(z~') - lambda_u u(z_k, a~_k) row by
  row; the critics' extra loss sum_j mean (Q_j(z_k, a~_k) - r~ - gamma min_j Qbar_j(z~', a'))^2 with
  a' ~ pi(z~'). The actor's loss and gradient do not change; with noise 0 nothing is added."""
  start, pairs, critic, target_critic = setup
  cfg = debug_config(horizon=3, penalty_scale=2.5, critic_action_noise=0.5).agent
  s = agent.loss_settings(cfg)
  key = jax.random.key(7)
  loss, (_, rollout) = ac_loss.actor_loss(params['actor'], nets, params['wm'], critic, start, pairs, key, **s.actor)
  plain = agent.loss_settings(debug_config(horizon=3, penalty_scale=2.5).agent)
  loss0, (_, rollout0) = ac_loss.actor_loss(
    params['actor'], nets, params['wm'], critic, start, pairs, key, **plain.actor
  )
  assert 'perturbed' not in rollout0
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)

  p = jax.tree.map(lambda x: np.asarray(x, np.float64), rollout['perturbed'])
  traj = nets.imagine(params['wm'], start, params['actor'], 3, jax.random.split(key)[0])
  own = np.asarray(traj['action'][:-1]).reshape(3 * N, -1)
  assert p['action'].shape == own.shape and np.all(np.abs(p['action']) <= 1.0)
  assert 0.2 < np.std(p['action'] - own) < 0.6  # perturbed by about the noise's std (less where clipped)
  np.testing.assert_allclose(p['feat'], np.asarray(traj['feat'][:-1]).reshape(3 * N, -1), rtol=1e-6)
  variables = {'params': params['wm']['rssm']}
  flat = lambda x: np.asarray(x[:-1]).reshape((3 * N,) + x.shape[2:])
  deter_k, stoch_k = flat(traj['deter']), flat(traj['stoch'])
  for row in range(3 * N):
    deter = nets.rssm.apply(
      variables, deter_k[row : row + 1], stoch_k[row : row + 1], p['action'][row : row + 1], method=rssm_lib.RSSM.core
    )
    np.testing.assert_allclose(deter[0], p['next_feat'][row, : nets.rssm.deter], rtol=1e-4, atol=1e-5)
    heads = np.asarray(nets.rssm.apply(variables, deter, method=rssm_lib.RSSM.prior_logits), np.float64)[:, 0]
    u = np.mean(np.std(heads, axis=0))
    r_hat = float(nets.predict_reward(params['wm'], jnp.asarray(p['next_feat'][row : row + 1], jnp.float32))[0])
    np.testing.assert_allclose(p['reward'][row], r_hat - 2.5 * u, rtol=1e-4, atol=1e-5)

  ckey = jax.random.key(9)
  total, metrics = ac_loss.critic_loss(critic, nets, target_critic, params['actor'], rollout, pairs, ckey, **s.critic)
  base, _ = ac_loss.critic_loss(critic, nets, target_critic, params['actor'], rollout0, pairs, ckey, **s.critic)
  a_next = nets.policy(params['actor'], rollout['perturbed']['next_feat']).sample(jax.random.fold_in(ckey, 1))
  qbar = np.asarray(nets.q_values(target_critic, rollout['perturbed']['next_feat'], a_next), np.float64).min(0)
  q = np.asarray(nets.q_values(critic, rollout['perturbed']['feat'], rollout['perturbed']['action']), np.float64)
  want = 0.0
  for j in range(2):
    want += np.mean([(q[j, row] - (p['reward'][row] + cfg.gamma * qbar[row])) ** 2 for row in range(3 * N)])
  np.testing.assert_allclose(metrics['critic/perturbed_loss'], want, rtol=1e-4)
  np.testing.assert_allclose(total, base + want, rtol=1e-4)
  assert float(metrics['critic/action_gap']) > 0.0
