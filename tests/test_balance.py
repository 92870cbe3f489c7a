"""The actor's balance between cloning and the value term (agent.balance, agent.mode='bc', the
update share after the optimizer) and the diagnostics that say whether the value term acts."""

import chex
from conftest import ACTION_DIM, constant_critic, debug_config, synthetic_batch
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from moto_jax import agent
from moto_jax.agent import update as update_lib

# One pytest-xdist worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group('balance')


def test_diagnostics_on_demos(nets, params):
  """Pins the pairing (z_i, a_{i+1}), the per-episode phases and the masks of padded demos."""
  from moto_jax.training import diagnostics

  config = debug_config()
  # Discounted returns by hand: r = [0, 1, 0, 2], gamma = 0.5:
  # G_0 = 1 + .5 * 0 + .25 * 2 = 1.5, G_1 = 0 + .5 * 2 = 1, G_2 = 2.
  np.testing.assert_allclose(diagnostics.discounted_returns(np.array([[0.0, 1.0, 0.0, 2.0]]), 0.5), [[1.5, 1.0, 2.0]])
  c = np.array([0.5, -0.25, 0.0, 0.75], np.float32)
  b = synthetic_batch(0, 4, 10)
  lengths = [10, 7, 10, 2]  # the 2-step demo is too short to use
  episodes = []
  for i, n in enumerate(lengths):
    e = {k: b[k][i, :n] for k in ('image', 'reward')}
    e['action'] = np.concatenate([np.zeros((1, 4)), np.tile(c, (n - 1, 1))]).astype(np.float32)
    e['action'][n // 2 :, 0] = -0.5  # the second half of each demo differs in dim 0
    e['is_first'] = np.arange(n) == 0
    e['bc_weight'] = np.float32(1.0)
    episodes.append(e)
  episodes.insert(1, dict(episodes[0], bc_weight=np.float32(0.0)))  # a failed episode: not a demo
  demos = diagnostics.demo_episodes(episodes, gamma=0.5, multiple=2)
  assert demos['episodes'] == 3 and demos['image'].shape == (4, 10, 64, 64, 3)  # padded to 2 devices' multiple
  np.testing.assert_array_equal(demos['mask'].sum(1), [9, 6, 9, 0])
  np.testing.assert_array_equal(demos['phase'][1, :6], [0, 0, 1, 1, 2, 2])
  np.testing.assert_allclose(demos['returns'][1, :6], diagnostics.discounted_returns(episodes[2]['reward'], 0.5))
  # A policy whose mode is c everywhere, critics that output 3.0 everywhere.
  mean_bias = 5.0 * np.arctanh(np.arctanh(c) / 5.0)
  out = params['actor']['mlp']['out']
  bias = np.concatenate([mean_bias, np.asarray(out['bias'])[4:]]).astype(np.float32)
  actor = {'mlp': {**params['actor']['mlp'], 'out': {'kernel': jnp.zeros_like(out['kernel']), 'bias': bias}}}
  const = {**params, 'actor': actor, 'critic': constant_critic(params['critic'], 3.0)}
  diag = diagnostics.Diagnostics(agent.build(config, ACTION_DIM), demos)
  res = diag(const, synthetic_batch(1, 2, 8), jax.random.key(1))
  # The reset pair is (z_0, a_1 = c): error 0. Pairing z_0 with a_0 = 0 would give mean |c| = 0.375.
  assert res['diag/action_err_reset'] < 1e-5
  assert res['diag/action_err_start'] < 1e-5  # first thirds: a_{i+1} = c
  # Last thirds: dim 0 is -0.5 instead of 0.5 on every pair -> error 1.0 / 4 dims.
  np.testing.assert_allclose(res['diag/action_err_end'], 0.25, atol=1e-5)
  # Per dimension over all pairs: only dim 0 errs (by 1.0), on the pairs whose a_{i+1} is in a demo's
  # second half: 5 of 9, 4 of 6 and 5 of 9 pairs.
  np.testing.assert_allclose(res['diag/action_err_dim_0'], 14 / 24, atol=1e-5)
  assert max(res[f'diag/action_err_dim_{i}'] for i in (1, 2, 3)) < 1e-5
  np.testing.assert_allclose(res['diag/q_data'], 3.0, rtol=1e-5)
  m = demos['mask'] > 0
  # Time-limited demos (no discount 0): each return is bootstrapped with the critic's 3.0 at the
  # episode's last step, weighted gamma^(steps to the end): a 10-step demo's first pair gets 0.5**9.
  np.testing.assert_allclose(demos['boot'][0, [0, 8]], [0.5**9, 0.5])
  np.testing.assert_array_equal(demos['last'], [9, 6, 9, 0])
  np.testing.assert_allclose(res['diag/return_data'], (demos['returns'] + 3.0 * demos['boot'])[m].mean(), rtol=1e-5)
  np.testing.assert_allclose([res[f'diag/demo_first_action_{i}'] for i in range(ACTION_DIM)], c, rtol=1e-6)
  assert 0.0 < diag(params, synthetic_batch(1, 2, 8), jax.random.key(1))['diag/bc_grad_share'] < 1.0
  # No BC (the ablation): the actor gradient is all value expansion.
  nobc = diagnostics.Diagnostics(agent.build(debug_config(bc_scale=0.0), ACTION_DIM), demos)
  assert nobc(params, synthetic_batch(1, 2, 8), jax.random.key(1))['diag/bc_grad_share'] == 0.0

  # dQ/da on the demos: critics Q(z, a) = -|a - p|^2 pull the policy's action toward p. Pairs where
  # the policy's mode already is the demo action (the first halves) give no direction; in the second
  # halves the demo differs from the mode by -1 in dim 0.
  class PullingNets:
    def __init__(self, point):
      self.point = jnp.asarray(point, jnp.float32)

    def __getattr__(self, name):
      return getattr(diag_nets, name)

    def q_values(self, critic_params, feat, action):
      q = -jnp.sum((action - self.point) ** 2, -1)
      return jnp.stack([q, q])

  diag_nets = diag.nets
  e0 = np.eye(4, dtype=np.float32)[0]
  for point, expected in ((c - e0, 1.0), (c + e0, -1.0)):
    pulled = diagnostics.Diagnostics(agent.build(config, ACTION_DIM), demos)
    pulled.nets = PullingNets(point)
    np.testing.assert_allclose(pulled(const, None, jax.random.key(1))['diag/dqda_demo_cos'], expected, atol=1e-4)

  # The critic's landscape around the demo actions ({c, c - e0}), apart from the actor: a critic peaked
  # at them ranks each demo action above its perturbation and leads back to it; one with its minima
  # there does the opposite. (Near 5 % of perturbations land nearer the other demo action.)
  class LandscapeNets(PullingNets):
    def __init__(self, sign):
      self.sign = sign

    def q_values(self, critic_params, feat, action):
      near = jnp.minimum(jnp.sum((action - c) ** 2, -1), jnp.sum((action - (c - e0)) ** 2, -1))
      return jnp.stack([-self.sign * near] * 2)

    def predict_reward(self, wm, feat):
      return jnp.zeros(feat.shape[:-1])

  for sign in (1.0, -1.0):
    probed = diagnostics.Diagnostics(agent.build(debug_config(penalty_scale=0.0), ACTION_DIM), demos, value_probe=True)
    probed.nets = LandscapeNets(sign)
    res = probed(const, None, jax.random.key(3))
    assert res['diag/q_prefers_demo'] == (1.0 if sign > 0 else 0.0)
    assert sign * res['diag/dqda_back_cos'] > 0.8
    # Without rewards or penalty the value expansion (Eq. 5) is Q(z_0, a_0) times a positive weight
    # plus the Q of the constant actor's later actions c (a peak: 0), so it ranks and points as Q does.
    assert res['diag/ve_prefers_demo'] == res['diag/q_prefers_demo']
    np.testing.assert_allclose(res['diag/ve_back_cos'], res['diag/dqda_back_cos'], atol=1e-4)
  assert 'diag/ve_prefers_demo' not in diag(const, None, jax.random.key(3))  # only with value_probe
  # The probe's expansion in every shape the actor losses use: H = 1, and DreamerV2's lambda-returns.
  for overrides in (dict(horizon=1), dict(mode='dreamerv2')):
    res = diagnostics.Diagnostics(agent.build(debug_config(**overrides), ACTION_DIM), demos, value_probe=True)(
      const, None, jax.random.key(3)
    )
    assert 0.0 <= res['diag/ve_prefers_demo'] <= 1.0 and -1.0 <= res['diag/ve_back_cos'] <= 1.0

  # The value term's share of the update needs the actor's optimizer state; with it, a share in [0, 1].
  state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0))
  res = diag(params, synthetic_batch(1, 2, 8), jax.random.key(1), actor_opt_state=state.opt_state['actor'])
  assert 'diag/value_update_share' not in diag(params, synthetic_batch(1, 2, 8), jax.random.key(1))
  assert np.isfinite(res['diag/value_update_share']) and -1.0 <= res['diag/grad_cos'] <= 1.0

  # Model exploitation on evaluation episodes of one length: the real return over H steps by hand.
  h = diag.horizon
  evals = [dict(episodes[0], reward=np.arange(10, dtype=np.float32) * (k + 1)) for k in range(3)]
  out = diag(params, None, jax.random.key(2), episodes=evals)
  # As many episodes as a multiple of the devices allows; from t, r_{t+1} + ... + r_{t+H} of reward (k+1) * t.
  read = 3 - 3 % jax.device_count()
  real = np.mean([(k + 1) * sum(t + j for j in range(1, h + 1)) for k in range(read) for t in range(10 - h)])
  np.testing.assert_allclose(out['diag/real_return'], real, rtol=1e-5)
  np.testing.assert_allclose(out['diag/exploit_gap'], out['diag/imag_return'] - real, rtol=1e-4, atol=1e-4)


# The balance between the value term and cloning (agent.balance, agent.mode='bc').


def _grads(nets, params, start, pairs, cfg):
  fn = jax.jit(
    lambda a: agent.actor_grads(
      a, nets, params['wm'], params['critic'], start, pairs, jax.random.key(4), **agent.loss_settings(cfg).actor
    )
  )
  return fn(params['actor'])


def _loss_grad(nets, params, start, pairs, cfg, term='actor/loss'):
  return jax.jit(
    jax.grad(
      lambda a: agent.actor_loss(
        a, nets, params['wm'], params['critic'], start, pairs, jax.random.key(4), **agent.loss_settings(cfg).actor
      )[1][0][term]
    )
  )(params['actor'])


def _flat(tree):
  return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def test_fixed_balance_is_the_gradient_of_the_actor_loss(nets, params, start, pairs):
  """'fixed' (the paper): the two terms' gradients, computed apart, sum to the gradient of Eq. 6 + beta Eq. 10."""
  cfg = debug_config(horizon=2, bc_scale=3.0).agent
  grads, metrics, _, (g_value, g_bc) = _grads(nets, params, start, pairs, cfg)
  chex.assert_trees_all_close(grads, _loss_grad(nets, params, start, pairs, cfg), rtol=1e-5, atol=1e-7)
  chex.assert_trees_all_close(
    g_bc,
    jax.tree.map(lambda g: 3.0 * g, _loss_grad(nets, params, start, pairs, cfg, 'actor/bc_loss')),
    rtol=1e-5,
    atol=1e-7,
  )
  a, b = _flat(g_value), _flat(g_bc)
  np.testing.assert_allclose(
    metrics['actor/grad_cos'], jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)), rtol=1e-4
  )


def test_share_balance_mixes_unit_directions(nets, params, start, pairs):
  """'share': value_share of the direction from the value term, the rest from cloning, both at unit
  norm: the result does not change when bc_scale or the rewards' scale does."""
  cfg = debug_config(horizon=2, balance='share', value_share=0.25).agent
  grads, _, _, (g_value, g_bc) = _grads(nets, params, start, pairs, cfg)
  np.testing.assert_allclose(float(jnp.linalg.norm(_flat(g_value))), 0.25, rtol=1e-5)
  np.testing.assert_allclose(float(jnp.linalg.norm(_flat(g_bc))), 0.75, rtol=1e-5)
  scaled, _, _, _ = _grads(
    nets, params, start, pairs, debug_config(horizon=2, balance='share', value_share=0.25, bc_scale=50.0).agent
  )
  chex.assert_trees_all_close(scaled, grads, rtol=1e-5, atol=1e-8)
  raw_value = _loss_grad(nets, params, start, pairs, debug_config(horizon=2, bc_scale=0.0).agent)
  direction = _flat(raw_value) / jnp.linalg.norm(_flat(raw_value))
  np.testing.assert_allclose(_flat(g_value), 0.25 * direction, rtol=1e-4, atol=1e-7)


def test_share_balance_with_one_term_off(nets, params, start, pairs):
  """'share' with bc_scale 0 ("No BC") gives the value term the whole direction; mode 'bc' gives cloning all of it."""
  nobc = debug_config(horizon=2, balance='share', value_share=0.25, bc_scale=0.0).agent
  grads, _, _, (g_value, g_bc) = _grads(nets, params, start, pairs, nobc)
  np.testing.assert_allclose(float(jnp.linalg.norm(_flat(g_value))), 1.0, rtol=1e-5)
  assert float(jnp.linalg.norm(_flat(g_bc))) == 0.0
  bc = debug_config(horizon=2, balance='share', value_share=0.25, mode='bc').agent
  grads, metrics, _, (g_value, g_bc) = _grads(nets, params, start, pairs, bc)
  assert float(jnp.linalg.norm(_flat(g_value))) == 0.0 and 'actor/grad_cos' not in metrics
  np.testing.assert_allclose(float(jnp.linalg.norm(_flat(g_bc))), 1.0, rtol=1e-5)


def test_bc_mode_clones_only(nets, params, start, pairs):
  """mode 'bc': the same stack with the actor's value term off; the critics still learn."""
  cfg = debug_config(mode='bc', bc_scale=2.0).agent
  grads, metrics, rollout, (g_value, _) = _grads(nets, params, start, pairs, cfg)
  chex.assert_trees_all_close(g_value, jax.tree.map(jnp.zeros_like, g_value))
  bc = _loss_grad(nets, params, start, pairs, debug_config(mode='bc').agent, 'actor/bc_loss')
  chex.assert_trees_all_close(grads, jax.tree.map(lambda g: 2.0 * g, bc), rtol=1e-5, atol=1e-8)
  assert rollout['reward'].shape[0] == cfg.horizon  # imagination still feeds the critics
  assert float(metrics['actor/mb_loss']) != 0.0


def test_cloning_weight_decays_from_the_offline_end():
  """agent.bc_final: 1 up to the offline end, then geometric to bc_final over bc_decay_updates, then bc_final."""
  weight = lambda step: float(agent.cloning_weight(step, start=600, final=0.01, updates=1000))
  np.testing.assert_allclose([weight(s) for s in (0, 600, 1100, 1600, 5000)], [1.0, 1.0, 0.1, 0.01, 0.01], rtol=1e-5)
  # The paper (bc_final 1): the Python constant, so the update's graph is the paper's.
  assert agent.cloning_weight(5000, start=600, final=1.0, updates=1000) == 1.0


def test_cloning_weight_scales_the_cloning_summand(nets, params, start, pairs):
  """The decayed weight multiplies the cloning summand after either balance and leaves the value summand."""
  for cfg in (debug_config(horizon=2, bc_scale=3.0).agent, debug_config(horizon=2, balance='share').agent):
    _, _, _, (g_value, g_bc) = _grads(nets, params, start, pairs, cfg)
    settings = agent.loss_settings(cfg).actor
    grads, metrics, _, (v, b) = jax.jit(
      lambda a, w: agent.actor_grads(
        a, nets, params['wm'], params['critic'], start, pairs, jax.random.key(4), bc_weight=w, **settings
      )
    )(params['actor'], jnp.float32(0.25))
    chex.assert_trees_all_close(v, g_value, rtol=1e-6)
    chex.assert_trees_all_close(b, jax.tree.map(lambda g: 0.25 * g, g_bc), rtol=1e-5, atol=1e-9)
    chex.assert_trees_all_close(grads, jax.tree.map(jnp.add, v, b), rtol=1e-6)
    np.testing.assert_allclose(metrics['actor/bc_weight'], 0.25)


def test_update_share_after_the_optimizer():
  """The value term's share of Adam's step: each term scaled by 1 / sqrt(nu), then |Pv| / (|Pv| + |Pb|)."""
  opt = optax.chain(optax.clip_by_global_norm(100.0), optax.adam(1e-3))
  params = {'w': jnp.zeros(2)}
  g_value, g_bc = {'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([0.0, 100.0])}
  grads = jax.tree.map(jnp.add, g_value, g_bc)
  _, state = opt.update(grads, opt.init(params), params)
  # Adam's bias-corrected nu is g^2: both coordinates scaled to the same size, so each term is half the step.
  np.testing.assert_allclose(update_lib.update_share(state, (g_value, g_bc)), 0.5, rtol=1e-4)
  zero = {'w': jnp.zeros(2)}
  assert float(update_lib.update_share(state, (zero, g_bc))) == 0.0
  # Both terms on the same coordinate: shares as their sizes there.
  g_value, g_bc = {'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([3.0, 0.0])}
  _, state = opt.update(jax.tree.map(jnp.add, g_value, g_bc), opt.init(params), params)
  np.testing.assert_allclose(update_lib.update_share(state, (g_value, g_bc)), 0.25, rtol=1e-4)


def test_full_update_reports_the_balance(config, batch):
  chex.clear_trace_counter()  # another test wraps train_step in assert_max_traces
  parts = agent.build(
    debug_config(
      balance='share', value_share=0.3, bc_filter='q', critic_action_noise=0.3, bc_final=0.01, bc_decay_updates=4
    ),
    ACTION_DIM,
  )
  state = agent.create_train_state(parts, jax.random.key(0))
  update = agent.make_update_fn(parts)
  state = state.replace(step=state.step + parts.config.train.offline_steps + 2)  # half way down the decay
  state, metrics = update(state, agent.shard_batch(batch, agent.default_mesh()), jax.random.key(1))
  np.testing.assert_allclose(metrics['actor/bc_weight'], 0.1, rtol=1e-5)
  assert 0.0 < float(metrics['actor/value_update_share']) < 1.0
  assert -1.0 <= float(metrics['actor/grad_cos']) <= 1.0
  assert 0.0 <= float(metrics['actor/bc_filter_keep']) <= 1.0  # the update's cloning term is the filtered one
  # The critics also trained on the perturbed actions' model transitions.
  assert float(metrics['critic/perturbed_loss']) > 0.0 and float(metrics['critic/action_gap']) > 0.0


def test_full_update_with_snippets(batch):
  """bc_filter 'snippets' through the jitted update: the cloned set is widened (the share of the
  other pairs it clones is logged) and the step stays finite."""
  parts = agent.build(debug_config(bc_filter='snippets', snippet_steps=3), ACTION_DIM)
  state = agent.create_train_state(parts, jax.random.key(0))
  update = agent.make_update_fn(parts)
  assert batch['bc_weight'].min() == 0 and batch['bc_weight'].max() == 1  # some pairs only the snippets clone
  state, metrics = update(state, agent.shard_batch(batch, agent.default_mesh()), jax.random.key(1))
  assert 0.0 <= float(metrics['actor/snippet_share']) <= 1.0
  assert np.isfinite(float(metrics['actor/loss']))
