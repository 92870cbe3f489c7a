"""The real-data pairs and the cloning term of the actor (Eq. 10), with what goes beyond the paper:
the critic-led filters of cloning (`agent.bc_filter`) and the decaying cloning weight (`agent.bc_final`).

Real-data pairing: in the stored convention the transition out of z_i is (a_{i+1}, r_{i+1},
z_{i+1}), so Eqs. 8 and 10 use pairs i = 0..T-2, masked where step i+1 starts an episode.
"""

import chex
import jax
import jax.numpy as jnp

from moto_jax.networks.world_model import Networks

sg = jax.lax.stop_gradient


def real_pairs(post_feat: jax.Array, batch: dict) -> dict:
  """Transitions (z_i, a_{i+1}, r_{i+1}, discount_{i+1}, z_{i+1}) of the batch, i = 0..T-2.

  Args: post_feat [B, T, F]. Returns arrays with leading axes [B, T-1]; `mask` is 0 where
  step i+1 is an episode start (no transition) and 1 elsewhere.
  """
  b, t = batch['reward'].shape
  chex.assert_shape(post_feat, (b, t, None))
  return {
    'feat': post_feat[:, :-1],
    'next_feat': post_feat[:, 1:],
    'action': batch['action'][:, 1:],
    'reward': batch['reward'][:, 1:],
    'discount': batch['discount'][:, 1:].astype(jnp.float32),
    'bc_weight': batch['bc_weight'][:, :-1].astype(jnp.float32),
    'mask': 1.0 - batch['is_first'][:, 1:].astype(jnp.float32),
  }


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def q_filter(actor_params, nets: Networks, critic_params, pairs: dict) -> jax.Array:
  """The Q-filter of cloning (Nair et al. 2018): 1 where the twin critics' minimum rates the data's
  action at least as high as the policy's own (tanh(mean)) at the same state, 0 elsewhere. [B, T-1],
  stopped. Where the critic prefers the policy's action, cloning steps aside and the value term alone
  moves the actor; where the policy drifts to actions the critic rates below the data's, cloning
  returns. The comparison is a ranking, so it does not depend on the scale of rewards or Q."""
  q_data, q_policy = _q_data_and_policy(actor_params, nets, critic_params, pairs)
  return sg((q_data >= q_policy).astype(jnp.float32))


def _q_data_and_policy(actor_params, nets: Networks, critic_params, pairs: dict):
  """min_j Q_j(z_i, a_{i+1}) and min_j Q_j(z_i, tanh(mean(z_i))) over the real pairs, [B, T-1] each."""
  z = sg(pairs['feat'])
  q_data = jnp.min(nets.q_values(critic_params, z, pairs['action']), axis=0)
  q_policy = jnp.min(nets.q_values(critic_params, z, nets.policy(actor_params, z).mode()), axis=0)
  return q_data, q_policy


ADVANTAGE_CLIP = 2.0  # standardised advantages are clipped to +-this before exp (weights within e^+-2)


def advantage_weights(actor_params, nets: Networks, critic_params, pairs: dict) -> jax.Array:
  """Advantage-weighted cloning, standardised within the batch: A_i = min_j Q_j(z_i, a_{i+1}) -
  min_j Q_j(z_i, tanh(mean(z_i))), standardised over the cloned pairs (mask * bc_weight),
  clipped to +-ADVANTAGE_CLIP, exponentiated and divided by their mean over those pairs. [B, T-1],
  stopped. Cloning keeps its total strength (mean weight 1) but leans toward the data actions the
  critic rates best relative to the policy; the standardisation removes the scale of Q, and with it
  the sign offset that makes the critic prefer the actor's own action everywhere (`q_filter`)."""
  q_data, q_policy = _q_data_and_policy(actor_params, nets, critic_params, pairs)
  adv = q_data - q_policy
  cloned = pairs['mask'] * pairs['bc_weight']
  mean = masked_mean(adv, cloned)
  std = jnp.sqrt(masked_mean((adv - mean) ** 2, cloned))
  weights = jnp.exp(jnp.clip((adv - mean) / jnp.maximum(std, 1e-6), -ADVANTAGE_CLIP, ADVANTAGE_CLIP))
  return sg(weights / jnp.maximum(masked_mean(weights, cloned), 1e-6))


def cloning_loss(actor_params, nets: Networks, pairs: dict, *, bc_eps: float, keep: jax.Array | None = None):
  """L_BC of Eq. 10: the masked, bc_weight-weighted -log pi(a_{i+1} | sg(z_i)) over the real pairs,
  each pair further weighted by `keep` [B, T-1] when given (`q_filter`). Returns (loss, metrics)."""
  logp = nets.policy(actor_params, sg(pairs['feat'])).log_prob(pairs['action'], bc_eps)
  weight = pairs['bc_weight'] if keep is None else pairs['bc_weight'] * keep
  bc_loss = masked_mean(-weight * logp, pairs['mask'])
  bc_mask = pairs['mask'] * pairs['bc_weight']
  metrics = {
    'actor/bc_loss': bc_loss,
    'actor/bc_loglik': masked_mean(logp, bc_mask),
    'data/bc_share': jnp.mean(pairs['bc_weight']),
  }
  if keep is not None:  # the share of the cloned pairs the filter keeps (the mean weight)
    metrics['actor/bc_filter_keep'] = masked_mean(keep, bc_mask)
    # Effective share of the cloned pairs, (sum w)^2 / (n sum w^2): 1 for equal weights, 1/n for one pair.
    cloned = (bc_mask > 0).astype(keep.dtype)
    w = keep * cloned
    metrics['actor/bc_filter_ess'] = jnp.sum(w) ** 2 / jnp.maximum(jnp.sum(cloned) * jnp.sum(w * w), 1e-12)
  return bc_loss, metrics


def cloning_keep(actor_params, nets: Networks, critic_params, pairs: dict, bc_filter: str) -> jax.Array | None:
  """The per-pair weight `bc_filter` puts on cloning: None for 'none', `q_filter` for 'q',
  `advantage_weights` for 'advantage'."""
  if bc_filter == 'none':
    return None
  if bc_filter == 'q':
    return q_filter(actor_params, nets, critic_params, pairs)
  if bc_filter == 'advantage':
    return advantage_weights(actor_params, nets, critic_params, pairs)
  raise ValueError(f'Unknown agent.bc_filter {bc_filter!r}')


def cloning_weight(step, *, start: int, final: float, updates: int):
  """Beyond the paper (`agent.bc_final`): the factor on the cloning term at update `step`, 1 up to
  `start` (the offline end), then falling geometrically to `final` over `updates` updates, then
  `final`. The Python float 1.0 where `final` is 1 (the paper: a constant weight)."""
  if final == 1.0:
    return 1.0
  progress = jnp.clip((jnp.asarray(step, jnp.float32) - start) / updates, 0.0, 1.0)
  return jnp.asarray(final, jnp.float32) ** progress


def is_unit(weight) -> bool:
  """True where `weight` is the Python constant 1.0 (`cloning_weight` with `agent.bc_final` 1, the paper):
  the update then leaves the cloning summand as it is, so its traced graph is the paper's."""
  return isinstance(weight, float) and weight == 1.0
