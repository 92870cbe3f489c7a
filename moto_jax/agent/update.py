"""The jitted training steps: `world_model_update` and the full `update` (ALGORITHM.md Sec. 7).

Data parallelism is `jax.jit` over a `Mesh` with one axis 'data': the batch's leading axis B is
sharded, the state is replicated, and XLA inserts the gradient all-reduce. The steps are traced
under the mesh, so the posterior and imagination scans run per device on their rows and sum their
parameters' gradients once (`xla_cpu.data_parallel`). With several hosts
the mesh spans every process's devices and the batch is the global batch (see `sharding.shard_batch`).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import optax

from moto_jax.agent import cloning
from moto_jax.agent.parts import AgentParts, Losses
from moto_jax.agent.sharding import AXIS, default_mesh, under_mesh
from moto_jax.agent.train_state import TrainState
from moto_jax.networks.world_model import Networks

sg = jax.lax.stop_gradient


def _apply(opt: optax.GradientTransformation, grads, opt_state, params):
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _world_model_step(parts: AgentParts, state: TrainState, batch, key):
  grad_fn = jax.value_and_grad(parts.losses.world_model, argnums=1, has_aux=True)
  (_, (metrics, post)), grads = grad_fn(parts.nets, state.params['wm'], batch, key)
  wm, opt_state = _apply(parts.opts['wm'], grads, state.opt_state['wm'], state.params['wm'])
  metrics['wm/grad_norm'] = optax.global_norm(grads)
  return wm, opt_state, metrics, post


def world_model_step(parts: AgentParts, state: TrainState, batch: dict, rng: jax.Array):
  """One world-model step (Eq. 1). Returns (state, metrics)."""
  wm, opt_state, metrics, _ = _world_model_step(parts, state, batch, jax.random.fold_in(rng, 0))
  state = state.replace(
    step=state.step + 1, params={**state.params, 'wm': wm}, opt_state={**state.opt_state, 'wm': opt_state}
  )
  return state, metrics


def start_chunks(post: dict, steps: int) -> dict:
  """Imagination starts: the batch's posterior states [B, T, ...], stopped (Sec. 3), split into
  `steps` chunks; chunk k holds time indices k, k+K, ... of every window. Returns 'deter' and
  'stoch' with leading axes [K, B*T/K]."""
  t = post['deter'].shape[1]
  if t % steps:
    raise ValueError(f'config.agent.actor_steps={steps} does not divide config.train.seq_len={t}')
  return sg(
    {
      k: jnp.stack([post[k][:, i::steps].reshape((-1,) + post[k].shape[2:]) for i in range(steps)])
      for k in ('deter', 'stoch')
    }
  )


class ActorCritic(NamedTuple):
  """What the actor-critic steps update: parameters, optimizer states, target critics, averaged actor."""

  actor: dict
  actor_opt: optax.OptState
  critic: dict
  critic_opt: optax.OptState
  target_critic: dict
  actor_ema: dict

  @classmethod
  def of(cls, state: TrainState) -> 'ActorCritic':
    return cls(
      state.params['actor'],
      state.opt_state['actor'],
      state.params['critic'],
      state.opt_state['critic'],
      state.target_critic,
      state.actor_ema,
    )

  def into(self, state: TrainState, **changes) -> TrainState:
    """`state` with these parts replaced (and any other `changes`, e.g. the world model's)."""
    params = {**state.params, 'actor': self.actor, 'critic': self.critic, **changes.pop('params', {})}
    opt_state = {**state.opt_state, 'actor': self.actor_opt, 'critic': self.critic_opt, **changes.pop('opt_state', {})}
    return state.replace(
      params=params, opt_state=opt_state, target_critic=self.target_critic, actor_ema=self.actor_ema, **changes
    )


def actor_critic_steps(
  nets: Networks,
  opts,
  losses: Losses,
  wm,
  carry: ActorCritic,
  chunks: dict,
  pairs: dict,
  k_actor: jax.Array,
  k_critic: jax.Array,
  *,
  tau: float,
  ema_decay: float,
  adam_eps: float = 1e-5,
  bc_weight=1.0,
):
  """K = len(chunks) actor steps, each followed by a critic step and the Polyak updates of the
  target critics (rate `tau`) and of the averaged actor (decay `ema_decay`), on a fixed world
  model `wm`; step k imagines from `chunks[k]`; BC and L_data use all of `pairs`; the cloning
  summand is scaled by `bc_weight` (`cloning.cloning_weight`).

  Returns (carry, metrics averaged over the K steps). With K = 1 the keys are `k_actor`,
  `k_critic` themselves.
  """
  critic_grad = jax.value_and_grad(losses.critic, has_aux=True)

  def step(c: ActorCritic, inputs):
    start, ka, kc = inputs
    grads, actor_metrics, rollout, terms = losses.actor_grads(
      c.actor, nets, wm, c.critic, start, pairs, ka, bc_weight=bc_weight
    )
    new_actor, actor_opt = _apply(opts['actor'], grads, c.actor_opt, c.actor)
    actor_metrics['actor/grad_norm'] = optax.global_norm(grads)
    actor_metrics['actor/value_update_share'] = update_share(actor_opt, terms, adam_eps)
    # Eq. 8 draws a' from the actor that produced the rollout (the pre-step actor).
    (_, critic_metrics), grads = critic_grad(c.critic, nets, c.target_critic, c.actor, rollout, pairs, kc)
    critic, critic_opt = _apply(opts['critic'], grads, c.critic_opt, c.critic)
    critic_metrics['critic/grad_norm'] = optax.global_norm(grads)
    target = optax.incremental_update(critic, c.target_critic, tau)  # Polyak
    ema = optax.incremental_update(new_actor, c.actor_ema, 1.0 - ema_decay)
    return ActorCritic(new_actor, actor_opt, critic, critic_opt, target, ema), {**actor_metrics, **critic_metrics}

  k = chunks['deter'].shape[0]
  if k == 1:
    return step(carry, (jax.tree.map(lambda x: x[0], chunks), k_actor, k_critic))
  keys = (
    jnp.stack([jax.random.fold_in(k_actor, i) for i in range(k)]),
    jnp.stack([jax.random.fold_in(k_critic, i) for i in range(k)]),
  )
  carry, metrics = jax.lax.scan(step, carry, (chunks, *keys))
  return carry, jax.tree.map(lambda x: jnp.mean(x, 0), metrics)


def update_share(opt_state, terms, eps: float = 1e-5, b2: float = 0.999) -> jax.Array:
  """The value term's share of the actor's parameter update, after the optimizer: both terms of the
  gradient (`actor_critic_loss.actor_grads`) scaled per parameter as Adam scales this step,
  1 / (sqrt(nu / (1 - b2^t)) + eps), then |P g_value| / (|P g_value| + |P g_BC|). (The global-norm
  clip before Adam scales both terms alike.)"""
  nu = optax.tree_utils.tree_get(opt_state, 'nu')
  count = optax.tree_utils.tree_get(opt_state, 'count')
  correction = 1.0 - b2 ** jnp.maximum(count, 1).astype(jnp.float32)
  scaled = [
    optax.global_norm(jax.tree.map(lambda g, v: g / (jnp.sqrt(v / correction) + eps), term, nu)) for term in terms
  ]
  return scaled[0] / jnp.maximum(scaled[0] + scaled[1], 1e-12)


def cloning_weight_at(parts: AgentParts, step):
  """The factor on the cloning term at update `step` (`agent.bc_final`, `agent.bc_decay_updates`;
  the decay starts at the offline end)."""
  cfg = parts.config
  return cloning.cloning_weight(
    step, start=cfg.train.offline_steps, final=cfg.agent.bc_final, updates=cfg.agent.bc_decay_updates
  )


def train_step(parts: AgentParts, state: TrainState, batch: dict, rng: jax.Array):
  """One update: world model, then actor on H-step imagination from the B*T posterior states, then critics.

  With `config.agent.actor_steps` = K > 1 the actor and critics take K steps in turn after the
  world-model step, step k imagining from the posterior states at time indices k, k+K, k+2K, ...
  of every window (B*T/K starts; together each start once, so imagination costs what one step
  from all B*T starts costs); the BC term and L_data see all of the batch's pairs in every step.
  K = 1 is the paper's update. Returns (state, metrics), metrics averaged over the K steps.
  The world-model key is the one `world_model_step` uses.
  """
  cfg = parts.config.agent
  k_wm, k_actor, k_critic = (jax.random.fold_in(rng, i) for i in range(3))
  wm, wm_opt, metrics, post = _world_model_step(parts, state, batch, k_wm)
  carry, ac_metrics = actor_critic_steps(
    parts.nets,
    parts.opts,
    parts.losses,
    wm,
    ActorCritic.of(state),
    start_chunks(post, cfg.actor_steps),
    cloning.real_pairs(sg(post['feat']), batch),
    k_actor,
    k_critic,
    tau=cfg.tau,
    ema_decay=cfg.actor_ema,
    adam_eps=parts.config.model.eps,
    bc_weight=cloning_weight_at(parts, state.step),
  )
  state = carry.into(state, step=state.step + 1, params={'wm': wm}, opt_state={'wm': wm_opt})
  return state, {**metrics, **ac_metrics}


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


def _jit(step_fn, parts: AgentParts, mesh: Mesh | None):
  mesh = mesh if mesh is not None else default_mesh()
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
  fn = under_mesh(skip_nonfinite(functools.partial(step_fn, parts)), mesh)
  return jax.jit(
    fn, in_shardings=(replicated, data, replicated), out_shardings=(replicated, replicated), donate_argnums=0
  )


def make_world_model_update_fn(parts: AgentParts, mesh: Mesh | None = None):
  """Jitted `world_model_update(state, batch, rng) -> (state, metrics)`; `state` is donated."""
  return _jit(world_model_step, parts, mesh)


def make_update_fn(parts: AgentParts, mesh: Mesh | None = None):
  """Jitted `update(state, batch, rng) -> (state, metrics)` (`train_step`); `state` is donated.

  Batch arrays have leading axes [B, T] (B divisible by the mesh size); metrics are scalars.
  """
  return _jit(train_step, parts, mesh)
