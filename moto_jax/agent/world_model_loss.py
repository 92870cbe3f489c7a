"""World-model ELBO with KL balancing against one random prior head (Eq. 1)."""

import chex
import jax
import jax.numpy as jnp
import ml_collections

from moto_jax.networks import conv, layers
from moto_jax.networks.world_model import Networks

sg = jax.lax.stop_gradient


def kl_balance(post: jax.Array, prior: jax.Array, alpha: float, free_nats: float):
  """KLbal(q, p) = alpha * KL(sg(q) || p) + (1 - alpha) * KL(q || sg(p)), free nats per element.

  Args: posterior and prior logits [..., G, C]. Returns (loss [...], KL(q || p) value [...]).
  """
  chex.assert_equal_shape([post, prior])
  dyn = layers.categorical_kl(sg(post), prior)  # trains the prior
  rep = layers.categorical_kl(post, sg(prior))  # trains the posterior
  loss = alpha * jnp.maximum(dyn, free_nats) + (1.0 - alpha) * jnp.maximum(rep, free_nats)
  return loss, dyn


SETTINGS = ('kl_alpha', 'free_nats', 'kl_scale', 'image_scale', 'reward_scale')


def settings_from(model_config: ml_collections.ConfigDict) -> dict:
  """`world_model_loss`'s keyword settings from `config.model`."""
  return {k: model_config[k] for k in SETTINGS}


def world_model_loss(
  nets: Networks,
  wm,
  batch: dict,
  key: jax.Array,
  *,
  kl_alpha: float,
  free_nats: float,
  kl_scale: float,
  image_scale: float,
  reward_scale: float,
) -> tuple[jax.Array, tuple[dict, dict]]:
  """Eq. 1, averaged over batch B and time T.

  Per step: 0.5 * ||x^ - x||^2 (images in [-0.5, 0.5], unit-variance Gaussian up to a constant)
  + 0.5 * (r^ - r)^2 + kl_scale * KLbal(q_t, p_{k_t}) with k_t uniform in 0..M-1 for every (b, t).

  Args: wm = params['wm']; batch with image uint8 [B, T, 64, 64, 3], action [B, T, A],
    reward [B, T], is_first bool [B, T]; kl_alpha, free_nats (`kl_balance`), and the weights
    kl_scale (beta_kl), image_scale, reward_scale of the three terms.
  Returns (loss, (metrics, posterior {'deter', 'stoch', 'logits', 'feat'} with [B, T] leading axes)).
  """
  b, t = batch['reward'].shape
  chex.assert_shape(batch['image'], (b, t) + nets.image_shape)
  chex.assert_shape(batch['action'], (b, t, nets.action_dim))
  chex.assert_shape(batch['is_first'], (b, t))
  k_obs, k_member = jax.random.split(key)

  embed = nets.encode(wm, batch['image'])
  post = nets.observe(wm, embed, batch['action'], batch['is_first'], k_obs)
  feat = post['feat']

  recon = nets.decode(wm, feat)
  image_nll = 0.5 * jnp.sum((recon - conv.preprocess(batch['image'])) ** 2, axis=(-3, -2, -1))
  reward_nll = 0.5 * (nets.predict_reward(wm, feat) - batch['reward']) ** 2

  prior_all = nets.prior_logits(wm, post['deter'])  # [M, B, T, G, C]
  member = jax.random.randint(k_member, (b, t), 0, nets.rssm.ensemble)
  prior = layers.select_member(prior_all, member)  # [B, T, G, C]
  kl_loss, kl = kl_balance(post['logits'], prior, kl_alpha, free_nats)

  loss = jnp.mean(image_scale * image_nll + reward_scale * reward_nll + kl_scale * kl_loss)
  metrics = {
    'wm/loss': loss,
    'wm/image_loss': jnp.mean(image_nll),
    'wm/reward_loss': jnp.mean(reward_nll),
    'wm/kl_loss': jnp.mean(kl_loss),
    'wm/kl': jnp.mean(kl),
    'wm/prior_entropy': jnp.mean(layers.categorical_entropy(prior)),
    'wm/post_entropy': jnp.mean(layers.categorical_entropy(post['logits'])),
    'wm/disagreement': jnp.mean(layers.ensemble_disagreement(sg(prior_all))),
  }
  return loss, (metrics, post)
