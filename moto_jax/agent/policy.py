"""Acting in the environment: the policy carry and the jitted acting step."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections

from moto_jax.networks import rssm as rssm_lib


def init_carry(config: ml_collections.ConfigDict, batch_size: int, action_dim: int) -> dict:
  """Zero policy carry: {'deter': [N, D], 'stoch': [N, G, C], 'action': [N, A]} (previous action)."""
  r = config.model.rssm
  return {
    'deter': jnp.zeros((batch_size, r.deter), jnp.float32),
    'stoch': jnp.zeros((batch_size, r.groups, r.classes), jnp.float32),
    'action': jnp.zeros((batch_size, action_dim), jnp.float32),
  }


def make_act_fn(parts):
  """Jitted `act(params, carry, image, is_first, rng, explore) -> (carry, action)`.

  `parts` from `agent.build`. params: TrainState.params; image uint8 [N, 64, 64, 3]; is_first bool [N] (resets the carry);
  explore (static): True explores as `config.agent.explore_from` says ('sample': a draw from the
  policy; 'mode': tanh(mean)), plus `config.agent.explore_noise` Gaussian noise, clipped to [-1, 1];
  False takes tanh(mean). The posterior state is sampled either way, as in training. The posterior step uses the previous action in the carry,
  matching the stored convention (action i led to image i). action: float32 [N, A] in [-1, 1].
  """
  nets, config = parts.nets, parts.config
  noise, explore_from = config.agent.explore_noise, config.agent.explore_from
  if explore_from not in ('sample', 'mode'):  # also for callers that skip config_check
    raise ValueError(f"config.agent.explore_from={explore_from!r}; expected 'sample' or 'mode'")

  @functools.partial(jax.jit, static_argnames=('explore',))
  def act(params, carry, image, is_first, rng, explore: bool = True):
    n = image.shape[0]
    chex.assert_shape(image, (n,) + nets.image_shape)
    chex.assert_shape(is_first, (n,))
    k_post, k_act, k_noise = jax.random.split(rng, 3)
    wm = params['wm']
    embed = nets.encode(wm, image)
    state = {'deter': carry['deter'], 'stoch': carry['stoch']}
    state, _ = nets.obs_step(wm, state, carry['action'], embed, is_first, k_post)
    dist = nets.policy(params['actor'], rssm_lib.feature(state))
    if explore:
      action = dist.sample(k_act) if explore_from == 'sample' else dist.mode()
      if noise > 0:
        action = jnp.clip(action + noise * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
    else:
      action = dist.mode()
    return {**state, 'action': action}, action

  return act
