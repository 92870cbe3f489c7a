"""Shapes, dtypes and basic properties of every module at the debug sizes."""

import functools

import chex
from conftest import ACTION_DIM
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moto_jax.networks import conv, layers
from moto_jax.networks import rssm as rssm_lib
from moto_jax.networks.actor_critic import TanhGaussian
from moto_jax.networks.world_model import make_networks
from moto_jax.xla_cpu import conv_forms


def test_encoder_shape(nets, params, config):
  image = jnp.zeros((2, 3, 64, 64, 3), jnp.uint8)
  embed = nets.encode(params['wm'], image)
  depth = config.model.encoder.depth
  # VALID stride-2 kernel-4 convs: 64 -> 31 -> 14 -> 6 -> 2; last depth 8 * depth.
  chex.assert_shape(embed, (2, 3, 2 * 2 * 8 * depth))
  chex.assert_type(embed, jnp.float32)


@pytest.mark.parametrize('kind', ['transpose', 'subpixel'])
def test_decoder_shape(kind, nets):
  decoder = conv.Decoder(kind=kind, depth=4, kernel=4, layers=4)
  feat = jnp.ones((2, 3, nets.feat_dim))
  p = decoder.init(jax.random.key(0), feat)
  out = decoder.apply(p, feat)
  chex.assert_shape(out, (2, 3, 64, 64, 3))
  chex.assert_type(out, jnp.float32)
  chex.assert_tree_all_finite(out)


def test_depth_to_space_matches_tf_layout():
  # Channel index c = (i * 2 + j) * out + k goes to pixel (2h + i, 2w + j), channel k.
  x = jnp.arange(8, dtype=jnp.float32).reshape(1, 1, 1, 8)
  y = conv_forms.depth_to_space(x, 2)
  chex.assert_shape(y, (1, 2, 2, 2))
  np.testing.assert_array_equal(y[0, :, :, 0], [[0, 2], [4, 6]])
  np.testing.assert_array_equal(y[0, :, :, 1], [[1, 3], [5, 7]])


def test_rssm_steps_shapes(nets, params, config):
  r = config.model.rssm
  n = 5
  state = rssm_lib.initial_state(nets.rssm, n)
  action = jnp.ones((n, ACTION_DIM))
  embed = jnp.ones((n, 2 * 2 * 8 * config.model.encoder.depth))
  post, logits = nets.obs_step(params['wm'], state, action, embed, jnp.zeros(n, bool), jax.random.key(1))
  chex.assert_shape(post['deter'], (n, r.deter))
  chex.assert_shape([post['stoch'], logits], (n, r.groups, r.classes))
  # Logits are normalised log-probs with at least unimix / C mass on every class.
  np.testing.assert_allclose(jax.scipy.special.logsumexp(logits, -1), 0.0, atol=1e-5)
  assert np.all(np.exp(logits) >= r.unimix / r.classes - 1e-6)
  # Samples are exactly one-hot in value.
  np.testing.assert_allclose(post['stoch'].sum(-1), 1.0, atol=1e-6)
  assert set(np.unique(np.round(np.asarray(post['stoch']), 5))) <= {0.0, 1.0}

  nxt, all_logits = nets.img_step(params['wm'], post, action, jax.random.key(2), jnp.zeros(n, jnp.int32))
  chex.assert_shape(all_logits, (r.ensemble, n, r.groups, r.classes))
  chex.assert_shape(rssm_lib.feature(nxt), (n, nets.feat_dim))


def test_ensemble_heads_initialised_differently(nets, params):
  prior = params['wm']['rssm']['prior']
  kernel = prior['mlp']['dense0']['kernel']
  assert kernel.shape[0] == nets.rssm.ensemble
  for i in range(1, kernel.shape[0]):
    assert not np.allclose(kernel[0], kernel[i])
  logits = nets.prior_logits(params['wm'], jnp.ones((3, nets.rssm.deter)))
  assert float(jnp.min(layers.ensemble_disagreement(logits))) > 1e-3


def _member_ops(raw, member, w_u, w_s, plain):
  """sum(w_u * Eq. 2) + sum(w_s * the picked member's log-probs), through unimix as in the RSSM."""
  logits = layers.unimix_logits(raw, 0.01)
  if plain:  # the textbook forms: jnp.std over members, a one-hot sum
    u = jnp.mean(jnp.std(jax.nn.log_softmax(logits, -1), axis=0), axis=(-2, -1))
    picked = jnp.sum(logits * jnp.moveaxis(jax.nn.one_hot(member, raw.shape[0]), -1, 0)[..., None, None], 0)
  else:
    u, picked = layers.ensemble_disagreement(logits), layers.select_member(logits, member)
  return jnp.sum(w_u * u) + jnp.sum(w_s * picked)


def test_member_ops_match_plain_formulas():
  """The written-out member sums and hand-written gradients equal the plain formulas (round-off)."""
  k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
  raw = 3.0 * jax.random.normal(k1, (7, 2, 5, 4, 6))  # [M, *batch (2, 5), G, C]
  member = jax.random.randint(k2, (2, 5), 0, 7)
  w_u, w_s = jax.random.normal(k3, (2, 5)), jax.random.normal(k4, (2, 5, 4, 6))
  fast = jax.jit(jax.value_and_grad(_member_ops), static_argnums=4)
  value, grad = fast(raw, member, w_u, w_s, False)
  ref_value, ref_grad = fast(raw, member, w_u, w_s, True)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5 * float(jnp.max(jnp.abs(ref_grad))))
  # The same under vmap (a leading axis of independent problems).
  grads = jax.vmap(jax.grad(_member_ops), (0, 0, None, None, None))
  np.testing.assert_allclose(
    grads(raw[None].repeat(2, 0), member[None].repeat(2, 0), w_u, w_s, False)[1],
    ref_grad,
    atol=1e-5 * float(jnp.max(jnp.abs(ref_grad))),
  )
  # (The pick's exactness and its gradient: tests/test_world_model.py::test_select_member_value_and_gradient.)
  # Members that agree exactly (a value whose member mean is exact): no disagreement, zero gradient.
  same = jnp.full(raw.shape, -2.5)
  np.testing.assert_array_equal(layers.ensemble_disagreement(same), 0.0)
  np.testing.assert_array_equal(jax.grad(lambda r: jnp.sum(layers.ensemble_disagreement(r)))(same), 0.0)


def test_critic_twins_differ(nets, params):
  feat = jax.random.normal(jax.random.key(0), (6, nets.feat_dim))
  q = nets.q_values(params['critic'], feat, jnp.zeros((6, ACTION_DIM)))
  chex.assert_shape(q, (2, 6))
  assert not np.allclose(q[0], q[1])


def test_straight_through_gradient_reaches_encoder(nets, params):
  image = jax.random.randint(jax.random.key(0), (2, 3, 64, 64, 3), 0, 255).astype(jnp.uint8)
  action = jnp.zeros((2, 3, ACTION_DIM))
  weights = jax.random.normal(jax.random.key(1), (nets.rssm.groups, nets.rssm.classes))

  def f(encoder_params):
    wm = {**params['wm'], 'encoder': encoder_params}
    post = nets.observe(wm, nets.encode(wm, image), action, jnp.zeros((2, 3), bool), jax.random.key(2))
    return jnp.sum(post['stoch'] * weights)  # depends on the encoder only through the samples

  grads = jax.jit(jax.grad(f))(params['wm']['encoder'])
  assert float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))) > 0.0


def test_actor_distribution(nets, params, config):
  feat = jax.random.normal(jax.random.key(0), (7, nets.feat_dim))
  dist = nets.policy(params['actor'], feat)
  assert isinstance(dist, TanhGaussian)
  chex.assert_shape([dist.mean, dist.std], (7, ACTION_DIM))
  assert np.all(dist.std >= config.agent.actor.min_std) and np.all(dist.std <= config.agent.actor.max_std)
  np.testing.assert_allclose(dist.mode(), jnp.tanh(dist.mean))
  action, logp = dist.sample_and_log_prob(jax.random.key(1))
  chex.assert_shape(action, (7, ACTION_DIM))
  chex.assert_shape(logp, (7,))
  assert np.all(np.abs(action) <= 1.0)
  # The stable sample log-density agrees with the atanh form away from the bounds.
  inside = np.all(np.abs(action) < 0.99, -1)
  np.testing.assert_allclose(logp[inside], dist.log_prob(action)[inside], rtol=1e-3, atol=1e-3)


def test_actor_log_prob_safe_at_bounds():
  dist = TanhGaussian(jnp.zeros((3, 2)), jnp.full((3, 2), 0.5))
  action = jnp.array([[1.0, -1.0], [1.0, 1.0], [0.0, -1.0]])
  logp, grad = jax.value_and_grad(lambda m: jnp.sum(TanhGaussian(m, dist.std).log_prob(action)))(dist.mean)
  assert np.isfinite(logp)
  chex.assert_tree_all_finite(grad)
  # Clipping: +1 and 1 - eps give the same value.
  np.testing.assert_allclose(dist.log_prob(action), dist.log_prob(jnp.clip(action, -1 + 1e-4, 1 - 1e-4)))


@pytest.mark.parametrize(
  'shape,kernel,stride,padding',
  [((2, 64, 64, 3), 4, 2, 'VALID'), ((2, 15, 15, 5), 3, 1, 'SAME'), ((2, 16, 16, 4), 4, 2, 'SAME')],
)
def test_patch_conv_equals_flax_conv(shape, kernel, stride, padding):
  """conv.Conv in both impls has nn.Conv's parameters (same init) and outputs and gradients."""
  import flax.linen as nn

  x = jax.random.normal(jax.random.key(0), shape)
  ref = nn.Conv(6, (kernel, kernel), strides=(stride, stride), padding=padding)
  p_ref = ref.init(jax.random.key(1), x)
  for impl in conv.IMPLS:
    mod = conv.Conv(6, (kernel, kernel), strides=(stride, stride), padding=padding, impl=impl)
    if impl == 'phases' and (stride, padding) == (2, 'SAME'):
      with pytest.raises(ValueError, match='stride-2 VALID'):
        mod.init(jax.random.key(1), x)
      continue
    p = mod.init(jax.random.key(1), x)
    chex.assert_trees_all_equal(p, p_ref)
    p = jax.tree.map(lambda a: a + 0.1, p)  # a non-zero bias
    np.testing.assert_allclose(mod.apply(p, x), ref.apply(p, x), atol=1e-5)
    g = jax.grad(lambda q, y: jnp.sum(jnp.sin(mod.apply(q, y))), argnums=(0, 1))(p, x)
    g_ref = jax.grad(lambda q, y: jnp.sum(jnp.sin(ref.apply(q, y))), argnums=(0, 1))(p, x)
    chex.assert_trees_all_close(g, g_ref, atol=1e-4)
  with pytest.raises(ValueError, match='impl'):
    conv.Conv(6, (3, 3), impl='fft').init(jax.random.key(1), x)


@pytest.mark.parametrize('size,kernel', [(31, 4), (14, 4), (64, 4), (15, 6), (9, 2)])
def test_stride2_phase_conv_equals_strided_conv(size, kernel):
  """The space-to-depth form of a stride-2 VALID conv: same outputs and gradients, odd sizes too."""
  x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 5))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 5, 7))
  ref = lambda a, b: jax.lax.conv_general_dilated(a, b, (2, 2), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))
  for patches in (False, True):  # the stride-1 conv by XLA, or as patches (the encoder at `paper`)
    phases = lambda a, b: conv_forms.conv_stride2_phases(a, b, patches=patches)
    out = phases(x, w)
    chex.assert_shape(out, ref(x, w).shape)
    np.testing.assert_allclose(out, ref(x, w), atol=1e-4)
    chex.assert_trees_all_close(jax.grad(loss(phases), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w), atol=1e-3)
  with pytest.raises(ValueError, match='even'):
    conv_forms.conv_stride2_phases(x, jnp.zeros((3, 3, 5, 7)))


@pytest.mark.parametrize('size,kernel,cout', [(4, 4, 6), (7, 4, 6), (8, 6, 6), (5, 2, 6), (16, 8, 6), (6, 4, 1)])
def test_transpose_phase_conv_equals_flax_conv_transpose(size, kernel, cout):
  """conv.ConvTranspose in every impl has nn.ConvTranspose's parameters, outputs and gradients."""
  import flax.linen as nn

  x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 5))
  ref = nn.ConvTranspose(cout, (kernel, kernel), strides=(2, 2), padding='SAME')
  init = ref.init(jax.random.key(1), x)
  p_ref = jax.tree.map(lambda a: a + 0.1, init)  # a non-zero bias
  for impl in conv.IMPLS:
    mod = conv.ConvTranspose(cout, (kernel, kernel), impl=impl)
    chex.assert_trees_all_equal(mod.init(jax.random.key(1), x), init)
    out = mod.apply(p_ref, x)
    chex.assert_shape(out, (2, 2 * size, 2 * size + 2, cout))
    np.testing.assert_allclose(out, ref.apply(p_ref, x), atol=1e-5)
    g = jax.grad(lambda q, y: jnp.sum(jnp.sin(mod.apply(q, y))), argnums=(0, 1))(p_ref, x)
    g_ref = jax.grad(lambda q, y: jnp.sum(jnp.sin(ref.apply(q, y))), argnums=(0, 1))(p_ref, x)
    chex.assert_trees_all_close(g, g_ref, atol=1e-4)
  with pytest.raises(ValueError, match='impl'):
    conv.ConvTranspose(6, (4, 4), impl='fft').init(jax.random.key(1), x)


@pytest.mark.parametrize('kernel,h,w', [(2, 5, 7), (4, 5, 7), (6, 5, 7), (8, 1, 2)])  # last: taps beyond x
def test_every_transposed_form_is_the_transposed_convolution(kernel, h, w):
  """Each way `conv_transpose_phases` computes its phases as products: lax.conv_transpose's
  values and gradients, on a non-square input; an unknown form is named."""
  x = jax.random.normal(jax.random.key(0), (2, h, w, 6))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 6, 4))
  ref = lambda a, b: jax.lax.conv_transpose(a, b, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))
  g_ref = jax.grad(loss(ref), (0, 1))(x, w)
  for form in conv_forms.TRANSPOSE_FORMS:
    f = functools.partial(conv_forms.conv_transpose_phases, patches=True, form=form)
    chex.assert_shape(f(x, w), (2, 2 * h, 2 * x.shape[2], 4))
    np.testing.assert_allclose(f(x, w), ref(x, w), atol=1e-4, err_msg=form)
    chex.assert_trees_all_close(jax.grad(loss(f), (0, 1))(x, w), g_ref, atol=1e-3)
  with pytest.raises(ValueError, match="'fft'"):
    conv_forms.conv_transpose_phases(x, w, patches=True, form='fft')


def test_auto_impl_is_patches_on_a_cpu_and_unknown_impls_are_named():
  assert conv.resolve_impl('auto') == ('patches' if jax.default_backend() == 'cpu' else 'xla')
  assert [conv.resolve_impl(i) for i in conv.IMPLS] == list(conv.IMPLS)
  with pytest.raises(ValueError, match="'fft'"):
    conv.resolve_impl('fft')
  from configs import metaworld

  nets = make_networks(metaworld.get_config('drawer-open,paper'), 4)
  assert nets.encoder.impl == nets.decoder.impl == conv.resolve_impl('auto')
  small = make_networks(metaworld.get_config('drawer-open,small'), 4)  # its decoder: XLA's own convs
  assert (small.encoder.impl, small.decoder.impl) == (conv.resolve_impl('auto'), 'xla')


def test_shifted_output_conv_equals_valid_conv():
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 6))
  w = jax.random.normal(jax.random.key(1), (2, 3, 6, 2))
  ref = lambda a, b: jax.lax.conv_general_dilated(a, b, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(conv_forms.conv_shifted_outputs(x, w), ref(x, w), atol=1e-4)
  loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))
  chex.assert_trees_all_close(
    jax.grad(loss(conv_forms.conv_shifted_outputs), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w), atol=1e-3
  )
  # Zero padding applied to the products instead of x: the convolution of the padded x.
  padded = lambda a, b: ref(jnp.pad(a, ((0, 0), (1, 2), (1, 2), (0, 0))), b)
  shifted = lambda a, b: conv_forms.conv_shifted_outputs(a, b, jnp.float32, (1, 2))
  chex.assert_shape(shifted(x, w), padded(x, w).shape)
  np.testing.assert_allclose(shifted(x, w), padded(x, w), atol=1e-4)
  chex.assert_trees_all_close(jax.grad(loss(shifted), (0, 1))(x, w), jax.grad(loss(padded), (0, 1))(x, w), atol=1e-3)


def test_computed_once_is_the_identity_with_its_gradient():
  x = jax.random.normal(jax.random.key(0), (3, 5, 5, 4))
  for token in (jnp.float32(1.0), jnp.float32(jnp.nan)):  # either branch
    np.testing.assert_array_equal(layers.computed_once(x, token), x)
    g = jax.grad(lambda a: jnp.sum(jnp.sin(layers.computed_once(a, token))))(x)
    np.testing.assert_array_equal(g, jnp.cos(x))
  # A fusion boundary XLA keeps: conditionals in the compiled gradient of the patch-form encoder
  # (one per layer whose output the next layer gathers, forward and backward).
  image = jax.random.randint(jax.random.key(1), (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
  enc = conv.Encoder(depth=4, impl='patches')
  p = enc.init(jax.random.key(2), image)
  grad = jax.jit(jax.grad(lambda q: jnp.sum(enc.apply(q, image))))
  assert grad.lower(p).compile().as_text().count(' conditional(') >= enc.layers - 1


def test_encoder_decoder_impls_agree():
  image = jax.random.randint(jax.random.key(0), (3, 64, 64, 3), 0, 256).astype(jnp.uint8)
  enc = [conv.Encoder(depth=4, impl=i) for i in conv.IMPLS]
  p = enc[0].init(jax.random.key(1), image)
  for e in enc[1:]:
    np.testing.assert_allclose(e.apply(p, image), enc[0].apply(p, image), atol=1e-4)
  feat = jax.random.normal(jax.random.key(2), (3, 20))
  for kind in ('subpixel', 'transpose'):
    dec = [conv.Decoder(kind=kind, depth=4, impl=i) for i in conv.IMPLS]
    p = dec[0].init(jax.random.key(1), feat)
    for d in dec[1:]:
      chex.assert_trees_all_equal_shapes(d.init(jax.random.key(1), feat), p)
      np.testing.assert_allclose(d.apply(p, feat), dec[0].apply(p, feat), atol=1e-4)


# The categorical KL and entropy are distrax's; checked here against their defining sums. The
# tanh-Gaussian stays hand-written, with distrax as its reference (distrax's is NaN at a saturated action).


def test_categorical_kl_and_entropy_match_their_definitions():
  a = 3.0 * jax.random.normal(jax.random.key(0), (5, 4, 8))
  b = 3.0 * jax.random.normal(jax.random.key(1), (5, 4, 8))
  la, lb = jax.nn.log_softmax(a), jax.nn.log_softmax(b)
  np.testing.assert_allclose(
    layers.categorical_kl(a, b), np.sum(np.exp(la) * (la - lb), axis=(-2, -1)), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    layers.categorical_entropy(a), -np.sum(np.exp(la) * la, axis=(-2, -1)), rtol=1e-5, atol=1e-5
  )
  # Shift invariance (logits are log-probs up to a constant) and KL(p || p) = 0.
  np.testing.assert_allclose(layers.categorical_kl(a + 7.0, b), layers.categorical_kl(a, b), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layers.categorical_kl(a, a), 0.0, atol=1e-5)
  # Two groups of two classes, by hand: p = (1/2, 1/2), q = (1/4, 3/4) in each group.
  p = jnp.log(jnp.array([[0.5, 0.5], [0.5, 0.5]]))
  q = jnp.log(jnp.array([[0.25, 0.75], [0.25, 0.75]]))
  kl_one = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
  np.testing.assert_allclose(layers.categorical_kl(p, q), 2 * kl_one, rtol=1e-6)
  np.testing.assert_allclose(layers.categorical_entropy(p), 2 * np.log(2.0), rtol=1e-6)
  with pytest.raises(AssertionError):
    layers.categorical_kl(a, b[:, :2])


def test_tanh_gaussian_agrees_with_distrax_inside_and_stays_finite_at_saturated_actions():
  import distrax

  mean = jax.random.normal(jax.random.key(0), (6, 3))
  std = jnp.full((6, 3), 0.5)
  ours = TanhGaussian(mean, std)
  ref = distrax.Independent(distrax.Transformed(distrax.Normal(mean, std), distrax.Tanh()), 1)
  inside = jnp.tanh(jax.random.normal(jax.random.key(2), (6, 3)))
  np.testing.assert_allclose(ours.log_prob(inside, 1e-6), ref.log_prob(inside), rtol=1e-5, atol=1e-4)
  sample, logp = ours.sample_and_log_prob(jax.random.key(3))
  ref_sample, ref_logp = ref.sample_and_log_prob(seed=jax.random.key(3))
  np.testing.assert_allclose(sample, ref_sample, atol=1e-6)
  np.testing.assert_allclose(logp, ref_logp, rtol=1e-5, atol=1e-4)
  # A demo action at exactly +-1 (the gripper, always): distrax's log-density is NaN there; Eq. 10
  # needs a finite value, which the clip to [-1 + eps, 1 - eps] gives.
  saturated = jnp.ones((6, 3))
  assert np.all(np.isnan(ref.log_prob(saturated)))
  assert np.all(np.isfinite(ours.log_prob(saturated)))
