"""The real-data pairs and the cloning term of the actor (Eq. 10), with what goes beyond the paper:
the critic-led filters of cloning (`agent.bc_filter`) and the decaying cloning weight (`agent.bc_final`).
The 'snippets' filter is the general form of the paper's prior (its Sec. 4 after ABM, ref. [47]):
besides the successful episodes, the snippets of any episode whose n-step advantage is positive.

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


def _state_value(actor_params, nets: Networks, critic_params, z: jax.Array) -> jax.Array:
  """V(z) = min_j Q_j(z, tanh(mean(z))): the critics at the policy's own action."""
  return jnp.min(nets.q_values(critic_params, z, nets.policy(actor_params, z).mode()), axis=0)


def _q_data_and_policy(actor_params, nets: Networks, critic_params, pairs: dict):
  """min_j Q_j(z_i, a_{i+1}) and V(z_i) (`_state_value`) over the real pairs, [B, T-1] each."""
  z = sg(pairs['feat'])
  q_data = jnp.min(nets.q_values(critic_params, z, pairs['action']), axis=0)
  return q_data, _state_value(actor_params, nets, critic_params, z)


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
  if 'success_weight' in pairs:  # 'snippets': how much of the rest of the data the filter clones
    rest = pairs['mask'] * (1.0 - pairs['success_weight'])
    metrics['actor/snippet_share'] = masked_mean(pairs['bc_weight'] - pairs['success_weight'], rest)
  if keep is not None:  # the share of the cloned pairs the filter keeps (the mean weight)
    metrics['actor/bc_filter_keep'] = masked_mean(keep, bc_mask)
    # Effective share of the cloned pairs, (sum w)^2 / (n sum w^2): 1 for equal weights, 1/n for one pair.
    cloned = (bc_mask > 0).astype(keep.dtype)
    w = keep * cloned
    metrics['actor/bc_filter_ess'] = jnp.sum(w) ** 2 / jnp.maximum(jnp.sum(cloned) * jnp.sum(w * w), 1e-12)
  return bc_loss, metrics


def snippet_advantage(actor_params, nets: Networks, critic_params, pairs: dict, *, gamma: float, steps: int):
  """The n-step advantage of every real pair, from real rewards and the critics' state values:

    A_i = sum_{k<n_i} gamma^k D_{i,k} r_{i+1+k} + gamma^{n_i} D_{i,n_i} V(z_{i+n_i}) - V(z_i),

  V(z) = min_j Q_j(z, tanh(mean(z))), D the product of the stored discounts along the way, and
  n_i = `steps`, cut short where the episode or the window ends first (n_i >= 1 wherever pair i has
  a transition). It asks whether the next n real steps reached a state the critics value more than
  they valued z_i, net of the discount: steps that stand still score (gamma^n - 1) V < 0. It reads
  the critics' ranking of states, not of actions at one state. [B, T-1], stopped."""
  reward, discount, mask = pairs['reward'], pairs['discount'], pairs['mask']
  length = reward.shape[1]
  v_here, v_next = (_state_value(actor_params, nets, critic_params, sg(pairs[k])) for k in ('feat', 'next_feat'))
  pad = lambda x: jnp.pad(x, ((0, 0), (0, steps)))  # past the window: no transition
  reward, discount, mask, v_next = map(pad, (reward, discount, mask, v_next))
  alive = jnp.ones_like(v_here)  # pairs i..i+k all have a transition
  scale = jnp.ones_like(v_here)  # gamma^k D_{i,k}
  ret, boot = jnp.zeros_like(v_here), jnp.zeros_like(v_here)
  for k in range(steps):
    alive = alive * mask[:, k : k + length]
    ret = ret + alive * scale * reward[:, k : k + length]
    scale = scale * gamma * discount[:, k : k + length]
    boot = jnp.where(alive > 0, scale * v_next[:, k : k + length], boot)  # the last step still alive
  return sg(ret + boot - v_here)


def cloning_inputs(
  actor_params,
  nets: Networks,
  critic_params,
  pairs: dict,
  bc_filter: str,
  *,
  gamma: float = 0.99,
  snippet_steps: int = 10,
):
  """The pairs and per-pair weight (`keep`) that `cloning_loss` takes under `bc_filter`:
  'none' (Eq. 10), 'q' (`q_filter`), 'advantage' (`advantage_weights`): the pairs as given, `keep`
  on the cloned ones; 'snippets': the cloned set widened to every pair whose `snippet_advantage`
  over `snippet_steps` steps is positive (bc_weight max(bc_weight, [A_i > 0])), no `keep`;
  'all': every pair with a transition cloned alike, successful or not (no critic: the control for
  'snippets', cloning as much data without choosing it). Returns (pairs, keep or None)."""
  if bc_filter == 'none':
    return pairs, None
  if bc_filter == 'q':
    return pairs, q_filter(actor_params, nets, critic_params, pairs)
  if bc_filter == 'advantage':
    return pairs, advantage_weights(actor_params, nets, critic_params, pairs)
  if bc_filter == 'snippets':
    adv = snippet_advantage(actor_params, nets, critic_params, pairs, gamma=gamma, steps=snippet_steps)
    positive = (adv > 0).astype(jnp.float32) * pairs['mask']
    widened = {**pairs, 'bc_weight': jnp.maximum(pairs['bc_weight'], positive), 'success_weight': pairs['bc_weight']}
    return widened, None
  if bc_filter == 'all':
    return {**pairs, 'bc_weight': pairs['mask'], 'success_weight': pairs['bc_weight']}, None
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
