"""The products' precision (xla_cpu/precision.py, `model.compute_dtype`): float32 is the plain
product bit for bit; bfloat16 rounds the factors (and the incoming gradient), accumulates in
float32, and stays bfloat16 in XLA:CPU's compiled program, backward products included."""

import re
import textwrap

from conftest import ACTION_DIM, debug_config, run_with_cpu_devices, synthetic_batch
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moto_jax import agent
from moto_jax.networks import conv, layers
from moto_jax.training import config_check
from moto_jax.xla_cpu import conv_forms, precision

BF16 = jnp.bfloat16


def _factors(m=96, k=40, n=24):
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  return (jax.random.normal(kx, (m, k)), jax.random.normal(kw, (k, n)) / np.sqrt(k), jax.random.normal(kg, (m, n)))


def _rounded(a):
  return np.asarray(a.astype(BF16).astype(jnp.float32), np.float64)


def test_float32_is_the_plain_product_bit_for_bit():
  x, w, g = _factors()
  np.testing.assert_array_equal(precision.matmul(x, w), x @ w)
  _, vjp = jax.vjp(precision.matmul, x, w)
  _, vjp_plain = jax.vjp(jnp.matmul, x, w)
  for a, b, c in zip(vjp(g), vjp_plain(g), precision.product_grads(x, w, g)):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, b)


@pytest.mark.parametrize('m,k,n', [(96, 40, 24), (96, 24, 40)])  # dw arranged both ways (K > N, K < N)
def test_bfloat16_rounds_the_factors_and_accumulates_in_float32(m, k, n):
  x, w, g = _factors(m, k, n)
  y, vjp = jax.vjp(lambda x, w: precision.matmul(x, w, BF16), x, w)
  dx, dw = vjp(g)
  assert y.dtype == dx.dtype == dw.dtype == jnp.float32
  xr, wr, gr = _rounded(x), _rounded(w), _rounded(g)
  # Exact products of the rounded factors, summed in float64: only float32 accumulation differs.
  np.testing.assert_allclose(y, xr @ wr, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, gr @ wr.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, xr.T @ gr, rtol=1e-5, atol=1e-4)
  # ... and they are not the float32 products (the rounding is real).
  assert np.max(np.abs(np.asarray(y) - np.asarray(x @ w))) > 1e-3
  assert np.max(np.abs(np.asarray(dw) - np.asarray(x.T @ g))) > 1e-3
  # Leading axes are kept.
  np.testing.assert_array_equal(precision.matmul(x.reshape(4, 24, k), w, BF16), y.reshape(4, 24, -1))


def test_convolutions_round_factors_and_gradient():
  """XLA's convolutions (impl 'xla', `precision.rounded`) and the patch form: the same rounding."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 6))
  k = jax.random.normal(jax.random.key(1), (3, 3, 6, 5))
  g = jax.random.normal(jax.random.key(2), (2, 4, 4, 5))
  conv32 = lambda a, b: conv_forms.conv_xla(a, b, 'VALID', (2, 2))
  y16, vjp16 = jax.vjp(lambda a, b: conv_forms.conv_xla(a, b, 'VALID', (2, 2), BF16), x, k)
  r = lambda a: a.astype(BF16).astype(jnp.float32)
  y_ref, vjp_ref = jax.vjp(conv32, r(x), r(k))
  np.testing.assert_allclose(y16, y_ref, rtol=1e-5, atol=1e-5)
  for a, b in zip(vjp16(g), vjp_ref(r(g))):
    assert a.dtype == jnp.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert np.max(np.abs(np.asarray(y16) - np.asarray(conv32(x, k)))) > 1e-3
  # The patch form: the patches gathered in bfloat16, their gradient summed in float32.
  for stride, padding in ((2, 'VALID'), (1, 'SAME')):
    y16, vjp16 = jax.vjp(lambda a, b: conv_forms.conv_patches(a, b, stride, padding, BF16), x, k)
    y_ref, vjp_ref = jax.vjp(lambda a, b: conv_forms.conv_patches(a, b, stride, padding), r(x), r(k))
    np.testing.assert_allclose(y16, y_ref, rtol=1e-5, atol=1e-5)
    gp = jax.random.normal(jax.random.key(5), y16.shape)
    for a, b in zip(vjp16(gp), vjp_ref(r(gp))):
      assert a.dtype == jnp.float32
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)
  # The transposed convolution and float32 (plain autodiff, bit for bit).
  xt = jax.random.normal(jax.random.key(3), (2, 4, 4, 6))
  np.testing.assert_array_equal(
    conv.ConvTranspose(5, (4, 4)).init_with_output(jax.random.key(4), xt)[0],
    nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding='SAME').init_with_output(jax.random.key(4), xt)[0],
  )
  for impl in ('xla', 'patches'):  # 'patches': the 'direct' form (conv_transpose_phases)
    low, f32 = conv.ConvTranspose(5, (4, 4), impl=impl, dtype='bfloat16'), conv.ConvTranspose(5, (4, 4), impl=impl)
    p = low.init(jax.random.key(4), xt)
    out16, vjp16 = jax.vjp(low.apply, p, xt)
    ref, vjp_ref = jax.vjp(f32.apply, jax.tree.map(r, p), r(xt))
    np.testing.assert_allclose(out16, ref, rtol=1e-5, atol=1e-5, err_msg=impl)
    gt = jax.random.normal(jax.random.key(6), out16.shape)
    (dp16, dx16), (dp_ref, dx_ref) = vjp16(gt), vjp_ref(r(gt))
    np.testing.assert_allclose(dx16, dx_ref, rtol=1e-5, atol=2e-5, err_msg=impl)
    np.testing.assert_allclose(dp16['params']['kernel'], dp_ref['params']['kernel'], rtol=1e-5, atol=2e-5, err_msg=impl)
    assert np.max(np.abs(np.asarray(out16) - np.asarray(f32.apply(p, xt)))) > 1e-3


def _dot_operand_types(hlo: str) -> list[tuple[str, str]]:
  """Element types of every dot's two operands in a compiled module's text."""
  out = []
  for comp in re.split(r'\n(?=\S)', hlo):  # one computation per block
    types = dict(re.findall(r'%([\w.\-]+) = (\w+)\[', comp))
    types.update(re.findall(r'([\w.\-]+): (\w+)\[', comp.split('\n', 1)[0]))  # signature parameters
    for a, b in re.findall(r'\bdot\(%([\w.\-]+), %([\w.\-]+)\)', comp):
      out.append((types.get(a), types.get(b)))
  return out


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason="XLA:CPU's compiled program")
def test_bfloat16_products_stay_bfloat16_in_the_compiled_gradient():
  """XLA:CPU converts a bfloat16 product back to float32 when its kernels cannot take the
  operands' layout (autodiff's transposed products): every product of the forward and backward
  pass of `matmul` and of the patch-form convolution must keep bfloat16 operands."""
  x, w, _ = _factors(512, 256, 128)
  img = jax.random.normal(jax.random.key(1), (8, 16, 16, 32))
  kernel = jax.random.normal(jax.random.key(2), (4, 4, 32, 48))
  cases = {
    'matmul': (lambda x, w: jnp.sum(jnp.sin(precision.matmul(x, w, BF16))), (x, w)),
    'matmul, odd rows': (lambda x, w: jnp.sum(jnp.sin(precision.matmul(x, w, BF16))), (x[:511], w)),
    'conv_patches': (lambda a, k: jnp.sum(jnp.sin(conv_forms.conv_patches(a, k, 2, 'VALID', BF16))), (img, kernel)),
    'transposed conv': (
      lambda a, k: jnp.sum(jnp.sin(conv_forms.conv_transpose_phases(a, k, True, BF16))),
      (img, kernel[..., :16]),
    ),
    'transposed conv, shifted sums': (
      lambda a, k: jnp.sum(jnp.sin(conv_forms.conv_transpose_phases(a, k, True, BF16, 'shifted'))),
      (img, kernel[..., :16]),
    ),
    'transposed conv, patches of the padded input': (
      lambda a, k: jnp.sum(jnp.sin(conv_forms.conv_transpose_phases(a, k, True, BF16, 'padded-patches'))),
      (img, kernel[..., :16]),
    ),
    'shifted outputs, few output channels': (
      lambda a, k: jnp.sum(jnp.sin(conv_forms.conv_shifted_outputs(a, k, BF16))),
      (img, kernel[..., :4]),
    ),
  }
  for name, (f, args) in cases.items():
    grad = jax.jit(jax.grad(f, (0, 1)))
    operands = _dot_operand_types(grad.lower(*args).compile().as_text())
    assert len(operands) >= 3, (name, operands)  # forward, input and kernel gradients
    assert all(t == ('bf16', 'bf16') for t in operands), (name, operands)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad(*args))  # and it runs


def test_dense_has_flax_parameters_and_output():
  x = jax.random.normal(jax.random.key(0), (5, 7))
  ours, flax_dense = layers.Dense(3), nn.Dense(3)
  p = ours.init(jax.random.key(1), x)
  q = flax_dense.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, p) == jax.tree.map(jnp.shape, q)
  for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(ours.apply(p, x), flax_dense.apply(q, x))
  low = layers.Dense(3, dtype='bfloat16').apply(p, x)
  np.testing.assert_allclose(low, flax_dense.apply(q, x), atol=0.05)
  assert not np.array_equal(low, flax_dense.apply(q, x))


def test_update_in_bfloat16_is_close_to_float32():
  """One update at the debug sizes, the encoder's and decoder's products in bfloat16 (patch forms,
  the transposed decoder): the same losses to ~2 %, but not the same numbers."""
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = debug_config()
    config.model.compute_dtype = dtype
    config.model.encoder.impl = config.model.decoder.impl = 'patches'
    config.model.decoder.kind = 'transpose'
    parts = agent.build(config, ACTION_DIM)
    state = agent.create_train_state(parts, jax.random.key(0))
    update = agent.make_update_fn(parts)
    batch = synthetic_batch(0, 4, config.train.seq_len)
    _, metrics = update(state, batch, jax.random.key(1))
    losses[dtype] = {k: float(metrics[k]) for k in ('wm/loss', 'wm/image_loss', 'critic/loss')}
  for k, v in losses['float32'].items():
    assert np.isfinite(losses['bfloat16'][k])
    assert losses['bfloat16'][k] == pytest.approx(v, rel=0.02), (k, losses)
  assert losses['bfloat16']['wm/image_loss'] != losses['float32']['wm/image_loss']


def test_the_config_check_knows_every_impl_and_dtype_the_networks_take():
  """config_check lists the choices itself (it runs before jax is imported): the same lists."""
  assert config_check.CONV_IMPLS == ('auto',) + conv.IMPLS
  assert config_check.COMPUTE_DTYPES == tuple(precision.DTYPES)


def test_compute_dtype_is_checked_and_older_runs_resume():
  config = debug_config()
  config.model.compute_dtype = 'float16'
  with pytest.raises(config_check.ConfigError, match=r"model\.compute_dtype='float16'.*bfloat16"):
    config_check.validate(config)
  with pytest.raises(ValueError, match="compute dtype 'float16'"):
    precision.resolve('float16')
  # A run recorded before the field existed did its products in float32.
  new = config_check.to_dict(debug_config())
  old = config_check.to_dict(debug_config())
  del old['model']['compute_dtype']
  assert config_check.config_diff(old, new) == []
  new['model']['compute_dtype'] = 'bfloat16'
  assert config_check.config_diff(old, new) == ['model.compute_dtype']


TWO_DEVICES = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from jax.sharding import Mesh
    jax.config.update('jax_disable_most_optimizations', True)
    from conftest import ACTION_DIM, debug_config, run_with_cpu_devices, synthetic_batch
    from moto_jax import agent

    config = debug_config()
    config.model.compute_dtype = 'bfloat16'
    config.model.encoder.impl = config.model.decoder.impl = 'patches'
    config.model.decoder.kind = 'transpose'
    batch = synthetic_batch(0, 4, config.train.seq_len)
    out = {}
    for name, devices in (('one', jax.devices()[:1]), ('two', jax.devices())):
      mesh = Mesh(np.asarray(devices), ('data',))
      parts = agent.build(config, ACTION_DIM)
      state = agent.create_train_state(parts, jax.random.key(0), mesh=mesh)
      update = agent.make_update_fn(parts, mesh=mesh)
      for step in range(2):                       # the second update's losses see the first's gradients
        state, metrics = update(state, agent.shard_batch(batch, mesh), jax.random.key(step))
      out[name] = {k: float(metrics[k]) for k in ('wm/loss', 'wm/image_loss', 'critic/loss')}
    print(json.dumps(out))
""")


@pytest.mark.slow
@pytest.mark.integration
def test_bfloat16_update_on_two_devices_matches_one():
  """The arranged products under the data-parallel mesh (the batch sharded over 2 devices): the
  same update as on one device, up to the order of float32 sums."""
  out = run_with_cpu_devices(TWO_DEVICES, 2)
  for k, v in out['one'].items():
    assert out['two'][k] == pytest.approx(v, rel=1e-5), (k, out)
