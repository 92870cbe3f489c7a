"""Policy (tanh-squashed Gaussian) and twin Q critics on the latent feature z.

The policy is returned as a `TanhGaussian` pytree, so it can cross `jax.jit` and `lax.scan`
boundaries and be evaluated on dataset actions (Eq. 10) as well as sampled (Eqs. 4-6).
"""

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from moto_jax.networks import layers

_LOG_SQRT_2PI = 0.5 * jnp.log(2.0 * jnp.pi)


class TanhGaussian(flax.struct.PyTreeNode):
  """`a = tanh(u)`, `u ~ Normal(mean, std)` with independent dimensions. mean, std [..., A]."""

  mean: jax.Array
  std: jax.Array

  def sample(self, key: jax.Array) -> jax.Array:
    """Reparameterised sample [..., A] in (-1, 1)."""
    return self.sample_given(jax.random.normal(key, self.mean.shape))

  def sample_given(self, noise: jax.Array) -> jax.Array:
    """`sample` with its standard-normal noise [..., A] drawn already."""
    return jnp.tanh(self.mean + self.std * noise)

  def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample [..., A] and its log-density [...], exact without an atanh."""
    noise = jax.random.normal(key, self.mean.shape)
    u = self.mean + self.std * noise
    log_normal = -0.5 * noise**2 - jnp.log(self.std) - _LOG_SQRT_2PI
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|.
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_normal - log_det, -1)

  def mode(self) -> jax.Array:
    """tanh(mean): the deterministic action [..., A]."""
    return jnp.tanh(self.mean)

  def log_prob(self, action: jax.Array, eps: float = 1e-4) -> jax.Array:
    """log pi(a) [...] of actions [..., A], clipped to [-1 + eps, 1 - eps] first (Eq. 10)."""
    chex.assert_equal_shape([action, self.mean])
    action = jnp.clip(action, -1.0 + eps, 1.0 - eps)
    u = jnp.arctanh(action)
    log_normal = -0.5 * ((u - self.mean) / self.std) ** 2 - jnp.log(self.std) - _LOG_SQRT_2PI
    log_det = jnp.log1p(-(action**2))
    return jnp.sum(log_normal - log_det, -1)


class Actor(nn.Module):
  """z [..., F] -> TanhGaussian over actions [..., A]; std in [min_std, max_std]."""

  action_dim: int
  units: int = 400
  layers: int = 4
  min_std: float = 0.1
  max_std: float = 1.0

  @nn.compact
  def __call__(self, feat: jax.Array) -> TanhGaussian:
    x = layers.MLP(self.units, self.layers, out=2 * self.action_dim, name='mlp')(feat)
    mean, std = jnp.split(x, 2, axis=-1)
    mean = 5.0 * jnp.tanh(mean / 5.0)  # keeps the pre-tanh mean in a range with useful gradients
    std = self.min_std + (self.max_std - self.min_std) * jax.nn.sigmoid(std + 2.0)
    return TanhGaussian(mean, std)


class QNetwork(nn.Module):
  """(z [..., F], a [..., A]) -> Q [...]."""

  units: int = 400
  layers: int = 4

  @nn.compact
  def __call__(self, feat: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([feat, action], -1)
    return layers.MLP(self.units, self.layers, out=1, name='mlp')(x)[..., 0]


class Critic(nn.Module):
  """Twin critics: (z [..., F], a [..., A]) -> Q_j [2, ...], member axis 0."""

  units: int = 400
  layers: int = 4
  num: int = 2

  @nn.compact
  def __call__(self, feat: jax.Array, action: jax.Array) -> jax.Array:
    ensemble = nn.vmap(
      QNetwork, variable_axes={'params': 0}, split_rngs={'params': True}, in_axes=None, out_axes=0, axis_size=self.num
    )
    return ensemble(self.units, self.layers, name='q')(feat, action)
