"""The agent's whole training state as one pytree, and its optimisers."""

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import optax

from moto_jax.agent.sharding import default_mesh, replicate
from moto_jax.networks import layers


class TrainState(flax.struct.PyTreeNode):
  """params = {'wm', 'actor', 'critic'}; opt_state has the same keys; step is an int32 scalar.

  `actor_ema` is the Polyak average of the actor's parameters (decay `agent.actor_ema` per actor
  step; 0 keeps it equal to the actor): the policy that acts, in exploring and evaluation episodes
  alike (`acting_params`). The gradient steps train `params['actor']`.
  """

  step: jax.Array
  params: dict
  target_critic: dict
  opt_state: dict
  actor_ema: dict


def acting_params(state: TrainState) -> dict:
  """The parameters the policy acts with: the world model and the averaged actor."""
  return {**state.params, 'actor': state.actor_ema}


def make_optimizers(config: ml_collections.ConfigDict) -> dict:
  """Adam with global-norm clipping for the world model, actor and critics (ALGORITHM.md Sec. 7)."""
  m, a = config.model, config.agent

  def adam(lr, clip, eps):
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, eps=eps))

  return {
    'wm': adam(m.lr, m.grad_clip, m.eps),
    'actor': adam(a.actor_lr, a.grad_clip, m.eps),
    'critic': adam(a.critic_lr, a.grad_clip, m.eps),
  }


def create_train_state(parts, rng: jax.Array, mesh: Mesh | None = None) -> TrainState:
  """Fresh parameters, optimiser states, target critics and averaged actor (copies), from the
  networks and optimizers of `parts` (`agent.build`).

  The state is placed replicated on `mesh` (default: every device), the layout the jitted
  updates take and return, so the first update call does not compile a second variant.
  """
  params = parts.nets.init(rng)
  opts = parts.opts
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    target_critic=jax.tree.map(jnp.copy, params['critic']),
    opt_state={k: opts[k].init(params[k]) for k in params},
    actor_ema=jax.tree.map(jnp.copy, params['actor']),
  )
  return replicate(state, mesh if mesh is not None else default_mesh())


def param_count(state: TrainState) -> dict:
  """Number of parameters per part: {'encoder', 'rssm', 'decoder', 'reward', 'actor', 'critic', 'total'}."""
  counts = {k: layers.num_params(v) for k, v in state.params['wm'].items()}
  counts['actor'] = layers.num_params(state.params['actor'])
  counts['critic'] = layers.num_params(state.params['critic'])
  counts['total'] = sum(counts.values())
  return counts
