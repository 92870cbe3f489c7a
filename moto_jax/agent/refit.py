"""Actor-critic steps on a frozen world model: `train.refit_steps` at the end of offline training,
`train.online_refit_steps` after each online episode's updates.

The world model is the expensive part of an update (about three quarters of it on a CPU), and the
actor needs many more steps than the world model to fit the demonstrations (a fresh actor on a
run's frozen model fitted them where the run's own, one step per update, had not). With the world model fixed, the posterior states of a set of episodes are
computed once, from each episode's reset as in evaluation, and an actor-critic step costs one
imagination from B*T of them: `make_refit_fn` runs `train.refit_steps` such steps in one jitted
scan, each on B windows of T steps drawn as the episode store draws them (edge-clamped starts),
with the update's own actor and critic losses and optimizers (`update.actor_critic_steps`).
Given the training loop's mesh, the B windows of every step are split over its devices as the
update's batch is (a replicated state without that constraint makes every device run the whole
refit). `train.refit_steps = 0` and `train.online_refit_steps = 0` (the paper) skip them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from moto_jax.agent import cloning
from moto_jax.agent.parts import AgentParts
from moto_jax.agent.sharding import AXIS, under_mesh
from moto_jax.agent.train_state import TrainState
from moto_jax.agent.update import ActorCritic, actor_critic_steps, cloning_weight_at, start_chunks
from moto_jax.data import episodes as ep_lib

KEYS = ('image', 'action', 'reward', 'discount', 'is_first')


def episode_arrays(episodes: list[dict], capacity: int | None = None) -> dict:
  """Episodes padded to the longest: KEYS [N, L, ...], `bc_weight` [N, L] (each step's behaviour-prior
  weight, `episodes.step_weights`), `length` [N] and `count` (the
  number of real episodes). With `capacity` >= len(episodes), N = capacity (rows past `count` are
  zeros of length 0, never drawn), so a growing set of episodes keeps one compiled refit."""
  if not episodes:
    raise ValueError('refit needs at least one episode')
  rows = len(episodes) if capacity is None else capacity
  if rows < len(episodes):
    raise ValueError(f'capacity={capacity} is below the {len(episodes)} episodes')
  length = max(len(e['image']) for e in episodes)
  out = {k: np.zeros((rows, length) + np.shape(episodes[0][k])[1:], np.asarray(episodes[0][k]).dtype) for k in KEYS}
  for n, e in enumerate(episodes):
    for k in KEYS:
      out[k][n, : len(e[k])] = e[k]
  out['bc_weight'] = np.zeros((rows, length), np.float32)
  for n, e in enumerate(episodes):
    out['bc_weight'][n, : len(e['image'])] = ep_lib.step_weights(e)
  out['length'] = np.zeros(rows, np.int32)
  out['length'][: len(episodes)] = [len(e['image']) for e in episodes]
  out['count'] = np.int32(len(episodes))
  return out


def sample_windows(
  key: jax.Array, lengths: jax.Array, b: int, t: int, count: jax.Array | int | None = None
) -> tuple[jax.Array, jax.Array]:
  """B windows of T steps over the first `count` (default: all) episodes of `lengths` [N], drawn as
  the episode store draws them: a uniform episode, a start uniform in [-(T-1), length) clamped to
  [0, length - T], so every step of an episode, its reset included, falls in about the same number
  of windows. Returns (episode [B], time index [B, T])."""
  k_ep, k_start = jax.random.split(key)
  ep = jax.random.randint(k_ep, (b,), 0, lengths.shape[0] if count is None else count)
  length = lengths[ep]
  start = jnp.clip(jax.random.randint(k_start, (b,), -(t - 1), length), 0, length - t)
  return ep, start[:, None] + jnp.arange(t)[None]


def make_refit_fn(parts: AgentParts, mesh: Mesh | None = None, steps: int | None = None):
  """Jitted `refit(state, arrays, key) -> (state, metrics)`: `steps` (default
  `config.train.refit_steps`) actor-critic steps (each `config.agent.actor_steps` of them, as in the
  update, with its losses and optimizers from `parts`) on `arrays` from `episode_arrays`; the world
  model and `state.step` are unchanged; metrics are means over steps.

  With `mesh` (1-D, axis 'data', size dividing `train.batch_size`) the state and arrays are
  replicated on its devices and each step's windows are sharded over them; without it the
  function runs where its inputs are (one device for an unreplicated state)."""
  config, nets = parts.config, parts.nets
  cfg = config.agent
  b, t = config.train.batch_size, config.train.seq_len
  steps = config.train.refit_steps if steps is None else steps
  if steps < 1:
    raise ValueError(f'a refit needs at least one step, got {steps}')
  if mesh is not None and b % mesh.size:
    raise ValueError(f'config.train.batch_size={b} is not divisible by the {mesh.size} devices of the mesh')
  if mesh is None:
    split = lambda tree: tree
    jit = jax.jit
  else:
    data = NamedSharding(mesh, P(AXIS))
    split = lambda tree: jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, data), tree)
    replicated = NamedSharding(mesh, P())
    jit = lambda f: jax.jit(under_mesh(f, mesh), in_shardings=replicated, out_shardings=replicated)

  @jit
  def refit(state: TrainState, arrays: dict, key: jax.Array):
    k_post, k_steps = jax.random.split(key)
    wm = state.params['wm']
    post = nets.observe(wm, nets.encode(wm, arrays['image']), arrays['action'], arrays['is_first'], k_post)

    def one(carry, k):
      k_windows, k_actor, k_critic = jax.random.split(k, 3)
      ep, idx = sample_windows(k_windows, arrays['length'], b, t, arrays['count'])
      take = lambda a: a[ep[:, None], idx]
      batch = {
        'action': take(arrays['action']),
        'reward': take(arrays['reward']),
        'discount': take(arrays['discount']),
        'is_first': idx == 0,
        'bc_weight': take(arrays['bc_weight']),
      }
      batch = split(batch)
      window = split({k: take(post[k]) for k in ('deter', 'stoch', 'feat')})
      pairs = cloning.real_pairs(window['feat'], batch)
      return actor_critic_steps(
        nets,
        parts.opts,
        parts.losses,
        wm,
        carry,
        start_chunks(window, cfg.actor_steps),
        pairs,
        k_actor,
        k_critic,
        tau=cfg.tau,
        ema_decay=cfg.actor_ema,
        adam_eps=parts.config.model.eps,
        bc_weight=cloning_weight_at(parts, state.step),
      )

    carry, metrics = jax.lax.scan(one, ActorCritic.of(state), jax.random.split(k_steps, steps))
    return carry.into(state), jax.tree.map(lambda x: jnp.mean(x, 0), metrics)

  return refit
