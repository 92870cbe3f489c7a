"""The world model and agent networks built from a config, with their parameter layout.

`Networks.init` returns one params dict:
  {'wm': {'encoder', 'rssm', 'decoder', 'reward'}, 'actor': ..., 'critic': ...}
and the helpers below apply the modules to the matching sub-tree. All functions are pure.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from moto_jax.networks import actor_critic, conv, layers
from moto_jax.networks import rssm as rssm_lib


@dataclasses.dataclass(frozen=True)
class Networks:
  """Flax modules of the agent (stateless; parameters live in a separate dict)."""

  encoder: conv.Encoder
  rssm: rssm_lib.RSSM
  decoder: conv.Decoder
  reward: layers.MLP
  actor: actor_critic.Actor
  critic: actor_critic.Critic
  action_dim: int
  image_shape: tuple[int, int, int]

  @property
  def feat_dim(self) -> int:
    return self.rssm.deter + self.rssm.groups * self.rssm.classes

  def init(self, key: jax.Array) -> dict:
    """Parameters of every network, each from its own key (one compiled computation)."""
    return jax.jit(self._init)(key)

  def _init(self, key: jax.Array) -> dict:
    keys = jax.random.split(key, 6)
    n = 1
    image = jnp.zeros((n,) + self.image_shape, jnp.uint8)
    embed = self.encoder.init(keys[0], image)['params']
    e = self.encoder.apply({'params': embed}, image)
    state = rssm_lib.initial_state(self.rssm, n)
    action = jnp.zeros((n, self.action_dim), jnp.float32)
    feat = jnp.zeros((n, self.feat_dim), jnp.float32)
    return {
      'wm': {
        'encoder': embed,
        'rssm': self.rssm.init(keys[1], state['deter'], state['stoch'], action, e)['params'],
        'decoder': self.decoder.init(keys[2], feat)['params'],
        'reward': self.reward.init(keys[3], feat)['params'],
      },
      'actor': self.actor.init(keys[4], feat)['params'],
      'critic': self.critic.init(keys[5], feat, action)['params'],
    }

  # World-model pieces; `wm` is params['wm'].
  def encode(self, wm, image: jax.Array) -> jax.Array:
    """uint8 [..., 64, 64, 3] -> [..., E]."""
    return self.encoder.apply({'params': wm['encoder']}, image)

  def decode(self, wm, feat: jax.Array) -> jax.Array:
    """[..., F] -> image mean [..., 64, 64, 3] in the [-0.5, 0.5] scale."""
    return self.decoder.apply({'params': wm['decoder']}, feat)

  def predict_reward(self, wm, feat: jax.Array) -> jax.Array:
    """[..., F] -> reward mean [...]."""
    return self.reward.apply({'params': wm['reward']}, feat)[..., 0]

  def prior_logits(self, wm, deter: jax.Array) -> jax.Array:
    """h [..., D] -> logits of every prior head [M, ..., G, C]."""
    return self.rssm.apply({'params': wm['rssm']}, deter, method=rssm_lib.RSSM.prior_logits)

  def observe(self, wm, embed, action, is_first, key, state=None) -> dict:
    """Posterior over a sequence; see `rssm.observe`. Adds 'feat' [B, T, F]."""
    post = rssm_lib.observe(self.rssm, wm['rssm'], embed, action, is_first, key, state)
    return {**post, 'feat': rssm_lib.feature(post)}

  def obs_step(self, wm, state, action, embed, is_first, key):
    return rssm_lib.obs_step(self.rssm, wm['rssm'], state, action, embed, is_first, key)

  def img_step(self, wm, state, action, key, member):
    return rssm_lib.img_step(self.rssm, wm['rssm'], state, action, key, member)

  def imagine(self, wm, start, actor_params, horizon: int, key) -> dict:
    """Prior rollout with the actor's reparameterised samples; see `rssm.imagine`."""
    policy = lambda params, feat, noise: self.policy(params, feat).sample_given(noise)
    return rssm_lib.imagine(self.rssm, wm['rssm'], start, policy, actor_params, horizon, key, self.action_dim)

  # Actor and critics.
  def policy(self, actor_params, feat: jax.Array) -> actor_critic.TanhGaussian:
    return self.actor.apply({'params': actor_params}, feat)

  def q_values(self, critic_params, feat: jax.Array, action: jax.Array) -> jax.Array:
    """Q_j(z, a): [2, ...]."""
    return self.critic.apply({'params': critic_params}, feat, action)


def make_networks(config: ml_collections.ConfigDict, action_dim: int) -> Networks:
  """Builds the modules from `config.model` and `config.agent` for images of `config.env.image_size`."""
  m, a = config.model, config.agent
  image_shape = (config.env.image_size, config.env.image_size, 3)
  # The precision of the encoder's and decoder's products (precision.py); runs recorded before the
  # field existed computed in float32.
  dtype = m.get('compute_dtype', 'float32')
  return Networks(
    encoder=conv.Encoder(**{**m.encoder, 'impl': conv.resolve_impl(m.encoder.impl)}, dtype=dtype),
    rssm=rssm_lib.RSSM(**m.rssm),
    decoder=conv.Decoder(
      **{**m.decoder, 'impl': conv.resolve_impl(m.decoder.impl)}, image_shape=tuple(image_shape), dtype=dtype
    ),
    reward=layers.MLP(m.reward_head.units, m.reward_head.layers, out=1),
    actor=actor_critic.Actor(action_dim, **a.actor),
    critic=actor_critic.Critic(**a.critic),
    action_dim=action_dim,
    image_shape=tuple(image_shape),
  )
