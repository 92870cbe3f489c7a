"""Small building blocks shared by every network: MLP and the categorical latent.

The stochastic state is G groups of C classes. Its "logits" are always normalised
log-probabilities (after the optional uniform mix), so that differences between
distributions, KL terms and the ensemble penalty are invariant to the softmax shift.
"""

import functools

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from moto_jax.xla_cpu import precision

sg = jax.lax.stop_gradient


class Dense(nn.Module):
  """`nn.Dense` (the same parameter names, shapes and initialisers) whose product runs at the
  precision `dtype` names ('float32' | 'bfloat16': `precision.matmul`). Output float32."""

  features: int
  use_bias: bool = True
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    y = precision.matmul(x, kernel, precision.resolve(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return y


class MLP(nn.Module):
  """`layers` x (Dense -> LayerNorm -> SiLU), then an optional linear output layer.

  Works on any leading axes: [..., In] -> [..., out] (or [..., units] when out is None).
  """

  units: int
  layers: int
  out: int | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.layers):
      x = nn.Dense(self.units, name=f'dense{i}')(x)
      x = nn.LayerNorm(name=f'norm{i}')(x)
      x = nn.silu(x)
    if self.out is not None:
      x = nn.Dense(self.out, name='out')(x)
    return x


def unimix_logits(logits: jax.Array, unimix: float) -> jax.Array:
  """Normalised log-probs of `(1 - unimix) * softmax(logits) + unimix / C`. [..., C] -> [..., C]."""
  if unimix <= 0.0:
    return jax.nn.log_softmax(logits, axis=-1)
  probs = jax.nn.softmax(logits, axis=-1)
  probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
  return jnp.log(probs)


def straight_through_given(gumbel: jax.Array, logits: jax.Array) -> jax.Array:
  """One-hot sample with straight-through gradients, `onehot + probs - sg(probs)`, given its Gumbel
  noise [..., G, C]: the sample is argmax(logits + gumbel), what `jax.random.categorical(key,
  logits)` draws when `gumbel = jax.random.gumbel(key, logits.shape)`. [..., G, C]."""
  chex.assert_equal_shape([gumbel, logits])
  probs = jax.nn.softmax(logits, axis=-1)
  index = jnp.argmax(logits + gumbel, axis=-1)
  onehot = jax.nn.one_hot(index, logits.shape[-1], dtype=probs.dtype)
  return onehot + probs - sg(probs)


def straight_through_mode(logits: jax.Array) -> jax.Array:
  """The most likely class as a one-hot, with the same straight-through gradient. [..., G, C]."""
  probs = jax.nn.softmax(logits, axis=-1)
  onehot = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=probs.dtype)
  return onehot + probs - sg(probs)


def _categoricals(logits: jax.Array) -> distrax.Distribution:
  """G independent categoricals over C classes, the G groups as one event: [..., G, C]."""
  return distrax.Independent(distrax.Categorical(logits=logits), reinterpreted_batch_ndims=1)


def categorical_kl(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
  """KL(lhs || rhs) of G independent categoricals, summed over groups. [..., G, C] -> [...]."""
  chex.assert_equal_shape([lhs, rhs])
  return _categoricals(lhs).kl_divergence(_categoricals(rhs))


def categorical_entropy(logits: jax.Array) -> jax.Array:
  """Entropy of G independent categoricals, summed over groups. [..., G, C] -> [...]."""
  return _categoricals(logits).entropy()


def sum_members(values) -> jax.Array:
  """Sum over the leading (member) axis of `values` [M, ...], as M - 1 elementwise adds in order.

  XLA:CPU runs a reduction over a short leading axis into a large output (7 members of [N, G, C])
  ~30x slower than the same adds written out.
  """
  total = values[0]
  for i in range(1, values.shape[0]):
    total = total + values[i]
  return total


@jax.custom_vjp
def ensemble_disagreement(logits: jax.Array) -> jax.Array:
  """Eq. 2: mean over (g, c) of the std over members of the log-probs. [M, ..., G, C] -> [...].

  `logits` are normalised log-probabilities, as `RSSM.prior_logits` returns them. The member sums
  are written out (`sum_members`) and the gradient by hand: one elementwise pass over [M, ...]
  instead of autodiff's M slices scattered back (same values within float32 round-off).
  """
  return _disagreement_fwd(logits)[0]


def _disagreement_fwd(logits):
  m = logits.shape[0]
  mean = sum_members(logits) / m
  std = jnp.sqrt(sum_members(jnp.square(logits - mean)) / m)
  return jnp.mean(std, axis=(-2, -1)), (logits, mean, std)


def _disagreement_bwd(res, g):
  """d std / d x_i = (x_i - mean) / (M std); 0 where the members agree exactly (std = 0)."""
  logits, mean, std = res
  m, groups, classes = logits.shape[0], logits.shape[-2], logits.shape[-1]
  scale = g[..., None, None] / (groups * classes * m * jnp.where(std > 0, std, 1.0))
  return (jnp.where(std > 0, (logits - mean) * scale, 0.0),)


ensemble_disagreement.defvjp(_disagreement_fwd, _disagreement_bwd)


def _member_mask(member: jax.Array, m: int, ndim: int) -> jax.Array:
  """bool [M, *batch, 1, ...]: row i is `member == i`, padded to `ndim` axes."""
  mask = member[None] == jnp.arange(m).reshape((m,) + (1,) * member.ndim)
  return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def select_member(values: jax.Array, member: jax.Array) -> jax.Array:
  """Picks member `member[...]` of an ensemble output: [M, *batch, ...], int [*batch] -> [*batch, ...].

  Exact (a select, no arithmetic); its gradient is the incoming one where the member was picked.
  """
  m = values.shape[0]
  chex.assert_shape(values, (m, *member.shape) + values.shape[1 + member.ndim :])
  return _select(m, values, member)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _select(m: int, values: jax.Array, member: jax.Array) -> jax.Array:
  picked = member.reshape(member.shape + (1,) * (values.ndim - 1 - member.ndim))
  total = jnp.where(picked == 0, values[0], 0.0)
  for i in range(1, m):
    total = jnp.where(picked == i, values[i], total)
  return total


def _select_fwd(m, values, member):
  return _select(m, values, member), member


def _select_bwd(m, member, g):
  return jnp.where(_member_mask(member, m, g.ndim + 1), g[None], 0.0), None


_select.defvjp(_select_fwd, _select_bwd)


def flatten_trailing(x: jax.Array, num: int) -> jax.Array:
  """Merges the last `num` axes: [..., a, b] -> [..., a * b] for num = 2."""
  return x.reshape(x.shape[:-num] + (-1,))


def num_params(tree) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(tree)))


def computed_once(x: jax.Array, token: jax.Array) -> jax.Array:
  """x, computed into memory once. XLA fuses an elementwise producer into each of its consumers,
  so a convolution's patch gather (k*k slices of x) computes the previous layer's LayerNorm and
  SiLU once per slice, through the space-to-depth transpose; XLA:CPU also drops
  `lax.optimization_barrier` before fusing. A conditional is a fusion boundary: its operand is
  computed once. Both branches return x, so the value is x whatever the predicate; `token` is a
  replicated scalar XLA cannot know (a parameter), since a predicate XLA can evaluate is folded
  away and one read from a batch-sharded x would need a collective."""
  return jax.lax.cond(jnp.isfinite(token), lambda a: a, lambda a: a * 1.0, x)
