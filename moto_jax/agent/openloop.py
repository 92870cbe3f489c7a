"""Open-loop video prediction: observe a few frames, then roll the prior on recorded actions."""

import jax
import jax.numpy as jnp

from moto_jax.networks import rssm as rssm_lib
from moto_jax.networks.world_model import Networks


def openloop_predict(params, batch: dict, context: int, nets: Networks, rng: jax.Array | None = None) -> dict:
  """Observes `context` steps, then rolls the prior on the recorded actions.

  With rng=None the prediction is deterministic: posterior and prior take the most likely
  class, and the prior is ensemble member 0. With a key, states are sampled and every step
  uses a random member. `nets`: the run's networks (`agent.build(config, action_dim).nets`). Wrap
  in `jax.jit` with `context` and `nets` static (or closed over) for repeated use.

  Args: batch with image uint8 [B, T, 64, 64, 3], action [B, T, A], is_first bool [B, T].
  Returns {'pred_image': float32 [B, T-context, 64, 64, 3] in [0, 1], 'pred_reward': [B, T-context]}.
  """
  b, t = batch['is_first'].shape
  if not 0 < context < t:
    raise ValueError(f'context must be in 1..{t - 1}, got {context}.')
  wm = params['wm']
  k_obs, k_img = jax.random.split(rng) if rng is not None else (None, None)
  embed = nets.encode(wm, batch['image'][:, :context])
  post = nets.observe(wm, embed, batch['action'][:, :context], batch['is_first'][:, :context], k_obs)
  start = {'deter': post['deter'][:, -1], 'stoch': post['stoch'][:, -1]}
  actions = jnp.swapaxes(batch['action'][:, context:], 0, 1)  # [T-context, B, A]

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
  feat = jnp.swapaxes(feat, 0, 1)  # [B, T-context, F]
  image = jnp.clip(nets.decode(wm, feat) + 0.5, 0.0, 1.0)
  return {'pred_image': image, 'pred_reward': nets.predict_reward(wm, feat)}
