"""Acting in the environment and open-loop video prediction."""
import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections

from moto_jax.networks import rssm as rssm_lib
from moto_jax.networks.world_model import make_networks


def init_carry(config: ml_collections.ConfigDict, batch_size: int, action_dim: int) -> dict:
  """Zero policy carry: {'deter': [N, D], 'stoch': [N, G, C], 'action': [N, A]} (previous action)."""
  r = config.model.rssm
  return {'deter': jnp.zeros((batch_size, r.deter), jnp.float32),
          'stoch': jnp.zeros((batch_size, r.groups, r.classes), jnp.float32),
          'action': jnp.zeros((batch_size, action_dim), jnp.float32)}


def make_act_fn(config: ml_collections.ConfigDict, action_dim: int,
                image_shape: tuple[int, int, int] = (64, 64, 3)):
  """Jitted `act(params, carry, image, is_first, rng, explore) -> (carry, action)`.

  params: TrainState.params; image uint8 [N, 64, 64, 3]; is_first bool [N] (resets the carry);
  explore (static): True explores as `config.agent.explore_from` says ('sample': a draw from the
  policy; 'mode': tanh(mean)), plus `config.agent.explore_noise` Gaussian noise, clipped to [-1, 1];
  False takes tanh(mean). The posterior state is sampled either way, as in training. The posterior step uses the previous action in the carry,
  matching the stored convention (action i led to image i). action: float32 [N, A] in [-1, 1].
  """
  nets = make_networks(config, action_dim, image_shape)
  noise, explore_from = config.agent.explore_noise, config.agent.explore_from
  if explore_from not in ('sample', 'mode'):
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


def openloop_predict(params, batch: dict, context: int, config: ml_collections.ConfigDict,
                     rng: jax.Array | None = None) -> dict:
  """Observes `context` steps, then rolls the prior on the recorded actions.

  With rng=None the prediction is deterministic: posterior and prior take the most likely
  class, and the prior is ensemble member 0. With a key, states are sampled and every step
  uses a random member. Wrap in `jax.jit(..., static_argnums=(2, 3))` for repeated use.

  Args: batch with image uint8 [B, T, 64, 64, 3], action [B, T, A], is_first bool [B, T].
  Returns {'pred_image': float32 [B, T-context, 64, 64, 3] in [0, 1], 'pred_reward': [B, T-context]}.
  """
  b, t = batch['is_first'].shape
  if not 0 < context < t:
    raise ValueError(f'context must be in 1..{t - 1}, got {context}.')
  nets = make_networks(config, batch['action'].shape[-1], tuple(batch['image'].shape[2:]))
  wm = params['wm']
  k_obs, k_img = jax.random.split(rng) if rng is not None else (None, None)
  embed = nets.encode(wm, batch['image'][:, :context])
  post = nets.observe(wm, embed, batch['action'][:, :context], batch['is_first'][:, :context], k_obs)
  start = {'deter': post['deter'][:, -1], 'stoch': post['stoch'][:, -1]}
  actions = jnp.swapaxes(batch['action'][:, context:], 0, 1)                     # [T-context, B, A]

  def step(state, inputs):
    action, k = inputs
    if k is None:
      member = jnp.zeros((b,), jnp.int32)
    else:
      k_member, k = jax.random.split(k)
      member = jax.random.randint(k_member, (b,), 0, nets.rssm.ensemble)
    state, _ = nets.img_step(wm, state, action, k, member)
    return state, rssm_lib.feature(state)

  keys = jax.random.split(k_img, t - context) if k_img is not None else None
  _, feat = jax.lax.scan(step, start, (actions, keys))
  feat = jnp.swapaxes(feat, 0, 1)                                                # [B, T-context, F]
  image = jnp.clip(nets.decode(wm, feat) + 0.5, 0.0, 1.0)
  return {'pred_image': image, 'pred_reward': nets.predict_reward(wm, feat)}
