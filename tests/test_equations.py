"""The equations the cloning/critic balance acts through, each against a plain loop written apart.

Imagination's penalised rewards (Eqs. 2-4) row by row, value expansion (Eqs. 5, 7) by a brute-force
double loop at H = 1..7, the critic targets with twin critics that differ and depend on the action
(Eqs. 7-9), Eq. 10 by value with an episode start inside the window and mixed weights, and the total
actor loss. The filters of cloning (`agent.bc_filter`): tests/test_cloning_filters.py.
"""

from conftest import LOSS_STARTS as N
from conftest import debug_config
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moto_jax import agent
from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.agent import cloning, returns
from moto_jax.networks import rssm as rssm_lib

pytestmark = pytest.mark.xdist_group('agent')


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


def test_critics_differ_and_depend_on_the_action(nets, loss_setup):
  _, pairs, critic, _ = loss_setup
  q = nets.q_values(critic, pairs['feat'], pairs['action'])
  q_other = nets.q_values(critic, pairs['feat'], -pairs['action'])
  assert float(jnp.min(jnp.abs(q[0] - q[1]))) > 1e-4
  assert float(jnp.min(jnp.abs(q - q_other))) > 1e-5


def test_imagined_rewards_row_by_row(nets, params, loss_setup):
  """Each penalised reward is r^(z_{k+1}) - lambda_u * u(z_k, a_k), with u the mean over (g, c) of
  the std over the M prior heads of the log-probabilities of z_{k+1} (Eq. 2), recomputed for every
  row and step from the rollout's own states and actions."""
  start, _, critic, _ = loss_setup
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


def test_critic_targets_with_twin_critics(nets, params, loss_setup):
  """Eq. 7 from the min over the twin target critics at the rollout's own (z, a); Eq. 8 from
  r_{i+1} + gamma d_{i+1} min_j Qbar_j(z_{i+1}, a'), a' ~ pi(z_{i+1}) drawn with the loss's key;
  L_critic = sum_j mean (Q_j - y)^2 over each set, masked where a window holds an episode start."""
  start, pairs, critic, target_critic = loss_setup
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


def test_cloning_loss_by_value_and_the_total_actor_loss(nets, params, loss_setup):
  """Eq. 10: mean over the window's pairs with a transition of -bc_weight_i log pi(a_{i+1} | z_i),
  the tanh-Gaussian log-density written out (clip to 1 - eps, atanh, Gaussian, minus log(1 - a^2));
  then L_pi = L_MB + beta_bc L_BC."""
  start, pairs, critic, _ = loss_setup
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


def test_perturbed_transitions_and_their_critic_loss_by_value(nets, params, loss_setup):
  """`agent.critic_action_noise`: from every imagined state z_k (k < H), the action a_k + noise,
  clipped to [-1, 1]; one GRU step, s' from a prior head, r~ = r^(z~') - lambda_u u(z_k, a~_k) row by
  row; the critics' extra loss sum_j mean (Q_j(z_k, a~_k) - r~ - gamma min_j Qbar_j(z~', a'))^2 with
  a' ~ pi(z~'). The actor's loss and gradient do not change; with noise 0 nothing is added."""
  start, pairs, critic, target_critic = loss_setup
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
