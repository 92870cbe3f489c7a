"""Small building blocks shared by every network: MLP and the categorical latent.

The stochastic state is G groups of C classes. Its "logits" are always normalised
log-probabilities (after the optional uniform mix), so that differences between
distributions, KL terms and the ensemble penalty are invariant to the softmax shift.
"""
import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


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


def straight_through_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
  """One-hot sample with straight-through gradients: `onehot + probs - sg(probs)`. [..., G, C]."""
  probs = jax.nn.softmax(logits, axis=-1)
  index = jax.random.categorical(key, logits, axis=-1)
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


def ensemble_disagreement(logits: jax.Array) -> jax.Array:
  """Eq. 2: mean over (g, c) of the std over members of the log-probs. [M, ..., G, C] -> [...]."""
  logits = jax.nn.log_softmax(logits, axis=-1)
  return jnp.mean(jnp.std(logits, axis=0), axis=(-2, -1))


def select_member(values: jax.Array, member: jax.Array) -> jax.Array:
  """Picks member `member[...]` of an ensemble output: [M, *batch, ...], int [*batch] -> [*batch, ...]."""
  m = values.shape[0]
  chex.assert_shape(values, (m, *member.shape) + values.shape[1 + member.ndim:])
  onehot = jax.nn.one_hot(member, m, dtype=values.dtype)          # [*batch, M]
  onehot = jnp.moveaxis(onehot, -1, 0)                             # [M, *batch]
  onehot = onehot.reshape(onehot.shape + (1,) * (values.ndim - onehot.ndim))
  return jnp.sum(values * onehot, axis=0)


def flatten_trailing(x: jax.Array, num: int) -> jax.Array:
  """Merges the last `num` axes: [..., a, b] -> [..., a * b] for num = 2."""
  return x.reshape(x.shape[:-num] + (-1,))


def num_params(tree) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(tree)))

