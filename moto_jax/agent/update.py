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


def start_chunks(post: dict, steps: int) -> dict:
  """Imagination starts: the batch's posterior states [B, T, ...], stopped (Sec. 3), split into
  `steps` chunks; chunk k holds time indices k, k+K, ... of every window. Returns 'deter' and
  'stoch' with leading axes [K, B*T/K]."""
  t = post['deter'].shape[1]
  if t % steps:
    raise ValueError(f'config.agent.actor_steps={steps} does not divide config.train.seq_len={t}')
  return sg({k: jnp.stack([post[k][:, i::steps].reshape((-1,) + post[k].shape[2:]) for i in range(steps)])
             for k in ('deter', 'stoch')})


def actor_critic_steps(nets: Networks, opts, cfg, wm, carry: tuple, chunks: dict, pairs: dict,
                       k_actor: jax.Array, k_critic: jax.Array):
  """K = len(chunks) actor steps, each followed by a critic step and the Polyak updates of the
  target critics and of the averaged actor, on a fixed world model `wm`; step k imagines from
  `chunks[k]`; BC and L_data use all of `pairs`.

  carry = (actor, actor_opt_state, critic, critic_opt_state, target_critic, actor_ema). Returns
  (carry, metrics averaged over the K steps). With K = 1 the keys are `k_actor`, `k_critic` themselves.
  """
  actor_grad = jax.value_and_grad(ac_loss.actor_loss, has_aux=True)
  critic_grad = jax.value_and_grad(ac_loss.critic_loss, has_aux=True)

  def step(carry, inputs):
    actor, actor_opt, critic, critic_opt, target, actor_ema = carry
    start, ka, kc = inputs
    (_, (actor_metrics, rollout)), grads = actor_grad(actor, nets, wm, critic, start, pairs, ka, cfg)
    new_actor, actor_opt = _apply(opts['actor'], grads, actor_opt, actor)
    actor_metrics['actor/grad_norm'] = optax.global_norm(grads)
    # Eq. 8 draws a' from the actor that produced the rollout (the pre-step actor).
    (_, critic_metrics), grads = critic_grad(critic, nets, target, actor, rollout, pairs, kc, cfg)
    critic, critic_opt = _apply(opts['critic'], grads, critic_opt, critic)
    critic_metrics['critic/grad_norm'] = optax.global_norm(grads)
    target = optax.incremental_update(critic, target, cfg.tau)    # Polyak
    actor_ema = optax.incremental_update(new_actor, actor_ema, 1.0 - cfg.actor_ema)
    return (new_actor, actor_opt, critic, critic_opt, target, actor_ema), {**actor_metrics, **critic_metrics}

  k = chunks['deter'].shape[0]
  if k == 1:
    return step(carry, (jax.tree.map(lambda x: x[0], chunks), k_actor, k_critic))
  keys = (jnp.stack([jax.random.fold_in(k_actor, i) for i in range(k)]),
          jnp.stack([jax.random.fold_in(k_critic, i) for i in range(k)]))
  carry, metrics = jax.lax.scan(step, carry, (chunks, *keys))
  return carry, jax.tree.map(lambda x: jnp.mean(x, 0), metrics)


def train(nets: Networks, opts, config, state: TrainState, batch: dict, rng: jax.Array):
  """World model, then actor on H-step imagination from the B*T posterior states, then critics.

  With `config.agent.actor_steps` = K > 1 the actor and critics take K steps in turn after the
  world-model step, step k imagining from the posterior states at time indices k, k+K, k+2K, ...
  of every window (B*T/K starts; together each start once, so imagination costs what one step
  from all B*T starts costs); the BC term and L_data see all of the batch's pairs in every step.
  K = 1 is the paper's update. Returns (state, metrics), metrics averaged over the K steps.
  The world-model key is the one `train_world_model` uses.
  """
  cfg = config.agent
  k_wm, k_actor, k_critic = (jax.random.fold_in(rng, i) for i in range(3))
  wm, wm_opt, metrics, post = _world_model_step(nets, opts, config, state, batch, k_wm)

  carry = (state.params['actor'], state.opt_state['actor'], state.params['critic'], state.opt_state['critic'],
           state.target_critic, state.actor_ema)
  carry, ac_metrics = actor_critic_steps(nets, opts, cfg, wm, carry, start_chunks(post, cfg.actor_steps),
                                         ac_loss.real_pairs(sg(post['feat']), batch), k_actor, k_critic)
  actor, actor_opt, critic, critic_opt, target, actor_ema = carry

  state = TrainState(step=state.step + 1, params={'wm': wm, 'actor': actor, 'critic': critic},
                     target_critic=target,
                     opt_state={'wm': wm_opt, 'actor': actor_opt, 'critic': critic_opt},
                     actor_ema=actor_ema)
  return state, {**metrics, **ac_metrics}


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
