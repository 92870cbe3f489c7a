"""The jitted training steps: `world_model_update` and the full `update` (ALGORITHM.md Sec. 7).

Data parallelism is `jax.jit` over a `Mesh` with one axis 'data': the batch's leading axis B is
sharded, the state is replicated, and XLA inserts the gradient all-reduce. With several hosts
the mesh spans every process's devices and the batch is the global batch (see `shard_batch`).
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.agent.train_state import TrainState, make_optimizers
from moto_jax.agent.world_model_loss import world_model_loss
from moto_jax.networks.world_model import Networks, make_networks

sg = jax.lax.stop_gradient


def _apply(opt: optax.GradientTransformation, grads, opt_state, params):
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _world_model_step(nets: Networks, opts, config, state: TrainState, batch, key):
  grad_fn = jax.value_and_grad(world_model_loss, argnums=1, has_aux=True)
  (_, (metrics, post)), grads = grad_fn(nets, state.params['wm'], batch, key, config.model)
  wm, opt_state = _apply(opts['wm'], grads, state.opt_state['wm'], state.params['wm'])
  metrics['wm/grad_norm'] = optax.global_norm(grads)
  return wm, opt_state, metrics, post


def train_world_model(nets: Networks, opts, config, state: TrainState, batch: dict, rng: jax.Array):
  """One world-model step (Eq. 1). Returns (state, metrics)."""
  wm, opt_state, metrics, _ = _world_model_step(nets, opts, config, state, batch, jax.random.fold_in(rng, 0))
  state = state.replace(step=state.step + 1, params={**state.params, 'wm': wm},
                        opt_state={**state.opt_state, 'wm': opt_state})
  return state, metrics


def train(nets: Networks, opts, config, state: TrainState, batch: dict, rng: jax.Array):
  """World model, then actor on H-step imagination from all B*T posterior states, then critics.

  Returns (state, metrics). The world-model key is the one `train_world_model` uses.
  """
  cfg = config.agent
  k_wm, k_actor, k_critic = (jax.random.fold_in(rng, i) for i in range(3))
  wm, wm_opt, metrics, post = _world_model_step(nets, opts, config, state, batch, k_wm)

  # Starts: every posterior state of the batch, stopped (Sec. 3).
  start = sg({k: post[k].reshape((-1,) + post[k].shape[2:]) for k in ('deter', 'stoch')})
  pairs = ac_loss.real_pairs(sg(post['feat']), batch)

  actor_grad = jax.value_and_grad(ac_loss.actor_loss, has_aux=True)
  (_, (actor_metrics, rollout)), grads = actor_grad(
      state.params['actor'], nets, wm, state.params['critic'], start, pairs, k_actor, cfg)
  actor, actor_opt = _apply(opts['actor'], grads, state.opt_state['actor'], state.params['actor'])
  actor_metrics['actor/grad_norm'] = optax.global_norm(grads)

  # Eq. 8 draws a' from the actor that produced the rollout (the pre-step actor).
  critic_grad = jax.value_and_grad(ac_loss.critic_loss, has_aux=True)
  (_, critic_metrics), grads = critic_grad(
      state.params['critic'], nets, state.target_critic, state.params['actor'], rollout, pairs,
      k_critic, cfg)
  critic, critic_opt = _apply(opts['critic'], grads, state.opt_state['critic'], state.params['critic'])
  critic_metrics['critic/grad_norm'] = optax.global_norm(grads)
  target = optax.incremental_update(critic, state.target_critic, cfg.tau)    # Polyak

  state = TrainState(step=state.step + 1, params={'wm': wm, 'actor': actor, 'critic': critic},
                     target_critic=target,
                     opt_state={'wm': wm_opt, 'actor': actor_opt, 'critic': critic_opt})
  return state, {**metrics, **actor_metrics, **critic_metrics}


def default_mesh() -> Mesh:
  """A 1-D mesh 'data' over every device of every process."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Builds the global batch from this process's rows, sharded over 'data' on axis 0."""
  sharding = NamedSharding(mesh, P('data'))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
  """Places a pytree (e.g. the TrainState) replicated on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def skip_nonfinite(step_fn):
  """Wraps a step so that an update with any non-finite metric (loss or gradient norm) is dropped.

  The wrapped step returns the input state unchanged in that case and reports
  `metrics['nonfinite'] = 1.0` (else 0.0); the training loop counts and limits these.
  """
  def wrapped(state, batch, rng):
    new_state, metrics = step_fn(state, batch, rng)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    return new_state, {**metrics, 'nonfinite': 1.0 - finite.astype(jnp.float32)}
  return wrapped


def _jit(step_fn, nets, config, mesh: Mesh | None):
  mesh = mesh if mesh is not None else default_mesh()
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  fn = skip_nonfinite(functools.partial(step_fn, nets, make_optimizers(config), config))
  return jax.jit(fn, in_shardings=(replicated, data, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def make_world_model_update_fn(config: ml_collections.ConfigDict, action_dim: int, mesh: Mesh | None = None,
                               image_shape: tuple[int, int, int] = (64, 64, 3)):
  """Jitted `world_model_update(state, batch, rng) -> (state, metrics)`; `state` is donated."""
  return _jit(train_world_model, make_networks(config, action_dim, image_shape), config, mesh)


def make_update_fn(config: ml_collections.ConfigDict, action_dim: int, mesh: Mesh | None = None,
                   image_shape: tuple[int, int, int] = (64, 64, 3)):
  """Jitted `update(state, batch, rng) -> (state, metrics)`; `state` is donated.

  Batch arrays have leading axes [B, T] (B divisible by the mesh size); metrics are scalars.
  """
  return _jit(train, make_networks(config, action_dim, image_shape), config, mesh)
