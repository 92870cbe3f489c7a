"""Learning diagnostics, computed at every evaluation (issue: make failures to learn visible).

On the offline dataset's successful episodes (the ones behaviour cloning trains on), with the
posterior of the current world model:

* `diag/action_err_{reset,start,middle,end}`: mean |tanh(mean_pi(z_i)) - a_{i+1}| over action
  dimensions, at the reset step and over the first, middle and last third of the episodes. A
  policy that clones the demos everywhere but at the reset leaves the data at once.
* `diag/q_data`, `diag/return_data`, `diag/q_return_corr`: min_j Q_j(z_i, a_{i+1}) against the
  data's discounted return sum_k gamma^k r_{i+1+k} (truncated at the episode's end), and their
  correlation over steps: is the critic calibrated where the data is?
* `diag/bc_grad_share`: ||g_BC|| / (||g_BC|| + ||g_MB||) of the actor's loss gradient on one batch,
  with g_BC the gradient of beta_bc * L_BC (Eq. 10) and g_MB that of L_pi_MB (Eq. 6). Near 1 the
  actor only clones; near 0 value expansion drives it.
* `diag/demo_first_action_{i}`: the demos' mean first action, to read beside the evaluation
  episodes' `eval/first_action_{i}` (logged by the loop).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.networks.world_model import make_networks

MAX_EPISODES = 16


def discounted_returns(reward: np.ndarray, gamma: float) -> np.ndarray:
  """G_i = sum_{k>=0} gamma^k r_{i+1+k} for i = 0..L-2 (truncated at the end); reward [N, L]."""
  out = np.zeros(reward.shape[:-1] + (reward.shape[-1] - 1,), np.float64)
  g = np.zeros(reward.shape[:-1])
  for i in reversed(range(reward.shape[-1] - 1)):
    g = reward[..., i + 1] + gamma * g
    out[..., i] = g
  return out.astype(np.float32)


def demo_episodes(episodes: list[dict], max_episodes: int = MAX_EPISODES) -> dict | None:
  """Stacks up to `max_episodes` successful episodes, cropped to the shortest: arrays [N, L, ...]."""
  chosen = [e for e in episodes if float(e['bc_weight']) > 0][:max_episodes]
  if not chosen:
    return None
  length = min(len(e['image']) for e in chosen)
  keys = ('image', 'action', 'reward', 'is_first')
  return {k: np.stack([e[k][:length] for e in chosen]) for k in keys}


class Diagnostics:
  """Builds the jitted diagnostic functions once; `__call__(params, target, batch, rng)` -> scalars."""

  def __init__(self, config, action_dim: int, demos: dict | None, image_shape=(64, 64, 3)):
    self.config = config
    self.nets = make_networks(config, action_dim, image_shape)
    self.demos = demos
    self.returns = (discounted_returns(demos['reward'], config.agent.gamma) if demos is not None else None)
    self._on_demos = jax.jit(self._demo_stats)
    self._grad_share = jax.jit(self._bc_grad_share)

  def _demo_stats(self, params, demos, key):
    nets = self.nets
    wm = params['wm']
    post = nets.observe(wm, nets.encode(wm, demos['image']), demos['action'], demos['is_first'], key)
    feat = post['feat'][:, :-1]                                               # z_i, i = 0..L-2
    target = demos['action'][:, 1:]                                           # a_{i+1}
    err = jnp.mean(jnp.abs(nets.policy(params['actor'], feat).mode() - target), -1)   # [N, L-1]
    q = jnp.min(nets.q_values(params['critic'], feat, target), axis=0)       # [N, L-1]
    return err, q

  def _bc_grad_share(self, params, batch, key):
    nets, cfg = self.nets, self.config.agent
    k_obs, k_actor = jax.random.split(key)
    wm = params['wm']
    post = nets.observe(wm, nets.encode(wm, batch['image']), batch['action'], batch['is_first'], k_obs)
    start = {k: post[k].reshape((-1,) + post[k].shape[2:]) for k in ('deter', 'stoch')}
    pairs = ac_loss.real_pairs(post['feat'], batch)
    bc_scale = ac_loss.effective(cfg)['bc_scale']

    def part(actor_params, name):
      _, (metrics, _) = ac_loss.actor_loss(actor_params, nets, wm, params['critic'], start, pairs,
                                           k_actor, cfg)
      return metrics[name]

    g_mb = optax.global_norm(jax.grad(part)(params['actor'], 'actor/mb_loss'))
    g_bc = bc_scale * optax.global_norm(jax.grad(part)(params['actor'], 'actor/bc_loss'))
    return g_bc / jnp.maximum(g_bc + g_mb, 1e-12)

  def __call__(self, params, batch: dict | None, rng: jax.Array) -> dict:
    out = {}
    k_demo, k_grad = jax.random.split(rng)
    if self.demos is not None:
      err, q = jax.device_get(self._on_demos(params, self.demos, k_demo))
      n = err.shape[1]
      thirds = np.array_split(np.arange(n), 3)
      out['diag/action_err_reset'] = float(err[:, 0].mean())
      for name, idx in zip(('start', 'middle', 'end'), thirds):
        out[f'diag/action_err_{name}'] = float(err[:, idx].mean())
      g = self.returns
      out['diag/q_data'] = float(q.mean())
      out['diag/return_data'] = float(g.mean())
      qs, gs = q.ravel(), g.ravel()
      out['diag/q_return_corr'] = (float(np.corrcoef(qs, gs)[0, 1]) if qs.std() > 0 and gs.std() > 0 else 0.0)
      for i, v in enumerate(self.demos['action'][:, 1].mean(0)):
        out[f'diag/demo_first_action_{i}'] = float(v)
    if batch is not None:
      out['diag/bc_grad_share'] = float(self._grad_share(params, batch, k_grad))
    return out
