"""World model: KL, ensemble disagreement, `observe`, the ELBO and its jitted update."""

import chex
from conftest import ACTION_DIM, synthetic_batch
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moto_jax import agent
from moto_jax.agent import update as update_lib
from moto_jax.networks import layers
from moto_jax.networks import rssm as rssm_lib

# One pytest-xdist worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group('world_model')


@pytest.fixture(scope='module')
def wm_update(config):
  """The jitted world-model update, checked to trace at most once in this module."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(update_lib, 'world_model_step', chex.assert_max_traces(update_lib.world_model_step, n=1))
    yield agent.make_world_model_update_fn(agent.build(config, ACTION_DIM))


def test_categorical_kl():
  p = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (5, 4, 3)))
  q = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (5, 4, 3)))
  np.testing.assert_allclose(layers.categorical_kl(p, p), 0.0, atol=1e-6)
  assert np.all(layers.categorical_kl(p, q) > 0.0)
  # Hand value, one group of two classes: KL([.5, .5] || [.25, .75]) = .5 ln 2 + .5 ln(2/3).
  kl = layers.categorical_kl(jnp.log(jnp.array([[0.5, 0.5]])), jnp.log(jnp.array([[0.25, 0.75]])))
  np.testing.assert_allclose(kl, 0.5 * np.log(2.0) + 0.5 * np.log(2.0 / 3.0), rtol=1e-6)


def test_kl_balance_routes_gradients():
  post = jax.random.normal(jax.random.key(0), (3, 4, 5))
  prior = jax.random.normal(jax.random.key(1), (3, 4, 5))
  loss, kl = agent.kl_balance(post, prior, alpha=0.8, free_nats=0.0)
  np.testing.assert_allclose(loss, kl, rtol=1e-6)  # same value, split gradients
  grad = lambda alpha: jax.grad(lambda q, p: jnp.sum(agent.kl_balance(q, p, alpha, 0.0)[0]), (0, 1))(post, prior)
  g_post, g_prior = grad(1.0)
  np.testing.assert_allclose(g_post, 0.0)  # alpha = 1: only the prior learns
  assert np.abs(g_prior).max() > 0
  g_post, g_prior = grad(0.0)
  np.testing.assert_allclose(g_prior, 0.0)
  assert np.abs(g_post).max() > 0
  # Free nats: below the threshold the loss is the constant and has no gradient.
  loss, _ = agent.kl_balance(post, prior, 0.8, free_nats=1e3)
  np.testing.assert_allclose(loss, 1e3)


def test_select_member_value_and_gradient():
  values = jax.random.normal(jax.random.key(0), (3, 2, 4, 5))  # [M, B, T, ...]
  member = jnp.array([[0, 1, 2, 1], [2, 2, 0, 0]])
  out = layers.select_member(values, member)
  expected = np.take_along_axis(np.asarray(values), np.asarray(member)[None, :, :, None], 0)[0]
  np.testing.assert_allclose(out, expected)
  grad = jax.grad(lambda v: jnp.sum(layers.select_member(v, member)))(values)
  np.testing.assert_allclose(grad, jax.nn.one_hot(member, 3).transpose(2, 0, 1)[..., None] * jnp.ones(5))


def test_disagreement_zero_when_identical_and_grows_with_spread():
  # Inputs are normalised log-probs, as RSSM.prior_logits gives them.
  base = jax.random.normal(jax.random.key(0), (6, 4, 5))
  noise = jax.random.normal(jax.random.key(1), (3, 6, 4, 5))
  identical = jax.nn.log_softmax(jnp.broadcast_to(base, (3, 6, 4, 5)) + 7.0)
  np.testing.assert_allclose(layers.ensemble_disagreement(identical), 0.0, atol=1e-5)
  u = [float(jnp.mean(layers.ensemble_disagreement(jax.nn.log_softmax(base + s * noise)))) for s in (0.1, 0.5, 2.0)]
  assert 0 < u[0] < u[1] < u[2]


def test_observe_equals_python_loop(nets, params):
  b, t = 2, 5
  batch = synthetic_batch(0, b, t)
  batch['is_first'][1, 3] = True  # a reset inside the sequence
  wm = params['wm']
  embed = nets.encode(wm, batch['image'])
  key = jax.random.key(3)
  post = jax.jit(nets.observe)(wm, embed, batch['action'], batch['is_first'], key)
  chex.assert_shape(post['feat'], (b, t, nets.feat_dim))

  obs_step = jax.jit(nets.obs_step)
  state = rssm_lib.initial_state(nets.rssm, b)
  keys = jax.random.split(key, t)
  for i in range(t):
    state, logits = obs_step(wm, state, batch['action'][:, i], embed[:, i], batch['is_first'][:, i], keys[i])
    np.testing.assert_allclose(post['deter'][:, i], state['deter'], atol=1e-5)
    np.testing.assert_allclose(post['stoch'][:, i], state['stoch'], atol=1e-5)
    np.testing.assert_allclose(post['logits'][:, i], logits, atol=1e-5)


def test_reset_zeroes_state(nets, params):
  """Where is_first, the step ignores the carried state and action."""
  wm = params['wm']
  n = 3
  embed = jax.random.normal(jax.random.key(0), (n, nets.encoder.depth * 32))
  junk = {'deter': jnp.ones((n, nets.rssm.deter)), 'stoch': jnp.ones((n, nets.rssm.groups, nets.rssm.classes))}
  zero = rssm_lib.initial_state(nets.rssm, n)
  first = jnp.ones(n, bool)
  a, la = nets.obs_step(wm, junk, jnp.ones((n, ACTION_DIM)), embed, first, None)
  b, lb = nets.obs_step(wm, zero, jnp.zeros((n, ACTION_DIM)), embed, first, None)
  np.testing.assert_allclose(la, lb, atol=1e-6)
  np.testing.assert_allclose(a['deter'], b['deter'], atol=1e-6)


def test_world_model_loss_terms(nets, params, config):
  batch = synthetic_batch(0, 2, 4)
  from moto_jax.agent.world_model_loss import settings_from

  settings = settings_from(config.model)
  loss_fn = jax.jit(lambda p, b, k: agent.world_model_loss(nets, p, b, k, **settings))
  loss, (metrics, post) = loss_fn(params['wm'], batch, jax.random.key(0))
  m = config.model
  expected = (
    m.image_scale * metrics['wm/image_loss']
    + m.reward_scale * metrics['wm/reward_loss']
    + m.kl_scale * metrics['wm/kl_loss']
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert metrics['wm/kl'] >= 0 and metrics['wm/disagreement'] > 0
  # Image term: 0.5 * SSE per image; decoding the posterior features by hand gives the same.
  recon = nets.decode(params['wm'], post['feat'])
  target = batch['image'].astype(np.float32) / 255 - 0.5
  np.testing.assert_allclose(
    metrics['wm/image_loss'], 0.5 * np.mean(np.sum((recon - target) ** 2, (2, 3, 4))), rtol=1e-4
  )


def test_world_model_update_traces_once_and_learns(wm_update, config):
  state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0))
  before = jax.tree.map(np.array, state.params)  # a copy: the state is donated
  batch = synthetic_batch(1, config.train.batch_size, config.train.seq_len)
  losses = []
  for step in range(200):
    state, metrics = wm_update(state, batch, jax.random.fold_in(jax.random.key(1), step))
    losses.append(float(metrics['wm/loss']))
  # A different batch of the same shapes does not retrace (assert_max_traces would raise).
  state, metrics = wm_update(
    state, synthetic_batch(2, config.train.batch_size, config.train.seq_len), jax.random.key(5)
  )
  assert int(state.step) == 201
  for k in (
    'wm/loss',
    'wm/image_loss',
    'wm/reward_loss',
    'wm/kl',
    'wm/prior_entropy',
    'wm/post_entropy',
    'wm/disagreement',
    'wm/grad_norm',
  ):
    assert np.isfinite(metrics[k]), k
  assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:3]), (losses[:3], losses[-10:])
  # Only the world model moves.
  chex.assert_trees_all_equal(before['actor'], jax.tree.map(np.asarray, state.params['actor']))
  chex.assert_trees_all_equal(before['critic'], jax.tree.map(np.asarray, state.params['critic']))


def test_world_model_fits_real_scripted_episodes(wm_update, config, tmp_path):
  """A few hundred debug-size steps on real drawer-open episodes lower the image and reward losses."""
  from moto_jax import suites
  from moto_jax.data.store import EpisodeStore

  real = config.copy_and_resolve_references()
  real.env.episode_length = 60  # long enough for the expert to open the drawer
  suites.get('metaworld').collect(real, str(tmp_path), num_episodes=3, progress=False)
  store = EpisodeStore(seq_len=config.train.seq_len)
  store.load_directory(str(tmp_path))
  rng = np.random.default_rng(0)
  state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0))
  image, reward = [], []
  for step in range(300):
    batch = store.sample(config.train.batch_size, rng)
    batch['bc_weight'] = batch['bc_weight'].astype(np.float32)
    batch = {k: batch[k] for k in ('image', 'action', 'reward', 'discount', 'is_first', 'is_terminal', 'bc_weight')}
    state, metrics = wm_update(state, batch, jax.random.fold_in(jax.random.key(2), step))
    image.append(float(metrics['wm/image_loss']))
    reward.append(float(metrics['wm/reward_loss']))
  assert np.mean(image[-20:]) < 0.5 * np.mean(image[:5]), (image[:5], image[-20:])
  assert np.mean(reward[-50:]) < np.mean(reward[:5]), (reward[:5], reward[-50:])
