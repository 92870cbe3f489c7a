"""The uncertainty bound of App. B (Theorem B.1, Eq. 12), measured during online fine-tuning.

Theorem B.1 (after MOPO) bounds the agent's under-performance against a reference policy pi_E by the
discounted model uncertainty along pi_E's state-action distribution under the learned model:

    J(pi_E) - J(pi)  <=  2 lambda_u eps_u(pi_E),    eps_u(pi) = sum_t gamma^t E[u(z_t, a_t)]

with u the ensemble disagreement of Eq. 2 and J the discounted return. Eq. 12 estimates eps_u from
expert episodes: posterior states z^i_k of the first K steps of each episode i (k = 0..K-1) are
rolled forward by the current model with the expert's recorded actions, and

    eps_hat = 1/(N K) sum_{i, k} sum_{h=0}^{H-1} gamma^h u(zhat^{i,k}_h, a^i_{k+h+1}),

H = L - K for episodes of L frames (the reset included; padded to the longest, steps past an
episode's end are masked). The prior steps sample a random ensemble head per
row and step, as the imagination of Sec. 4 does; the posterior takes the most likely class.

At each evaluation the main job logs, in `metrics.jsonl` (`phase` eval, `bound/*`): the expert's and
the agent's discounted returns on the same start seeds, their gap, eps_hat and 2 lambda_u eps_hat,
and draws `bound.png` (the paper's Fig. 6). The reference policy is the suite's noise-free scripted
expert (`Suite.expert_episodes`).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from moto_jax.networks import layers


def discounted_return(reward: np.ndarray, gamma: float) -> float:
  """sum_{i>=1} gamma^(i-1) r_i of one episode (reward[0] belongs to the reset)."""
  from moto_jax.training.diagnostics import discounted_returns

  return float(discounted_returns(np.asarray(reward, np.float64), gamma)[0]) if len(reward) > 1 else 0.0


def rollout_uncertainty(
  img_step: Callable, ensemble: int, start, actions: jax.Array, valid: jax.Array, gamma: float, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Rolls `start` (a state pytree with rows [R]) through `actions` [H, R, A]; returns the discounted
  disagreement per row, sum_h gamma^h u_h valid_h [R], and u [H, R].

  `img_step(state, action, key, member) -> (state', logits of every head [M, R, G, C])`, with
  `member` int [R] the head that draws s' (uniform at random per row and step).
  """
  rows, horizon = valid.shape[1], valid.shape[0]

  def step(state, inputs):
    action, k = inputs
    k_member, k_sample = jax.random.split(k)
    member = jax.random.randint(k_member, (rows,), 0, ensemble)
    nxt, all_logits = img_step(state, action, k_sample, member)
    return nxt, layers.ensemble_disagreement(all_logits)  # Eq. 2, [R]

  _, u = jax.lax.scan(step, start, (actions, jax.random.split(key, horizon)))
  discount = gamma ** jnp.arange(horizon, dtype=jnp.float32)[:, None]
  return jnp.sum(discount * u * valid, axis=0), u


def expert_batch(episodes: list[dict], starts: int) -> dict:
  """Expert episodes padded to the longest: image [N, L, ...], action [N, L, A], is_first [N, L],
  `step_valid` [N, L] (1 on the episode's own steps). Every episode needs more than `starts` steps."""
  length = max(len(e['image']) for e in episodes)
  short = [len(e['image']) for e in episodes if len(e['image']) <= starts + 1]
  if short:
    raise ValueError(
      f'The uncertainty bound starts from the first {starts} steps (train.bound_starts) and '
      f'needs longer episodes; {len(short)} expert episode(s) have only {min(short)} frames.'
    )
  out = {
    k: np.zeros((len(episodes), length) + episodes[0][k].shape[1:], episodes[0][k].dtype) for k in ('image', 'action')
  }
  out['is_first'] = np.zeros((len(episodes), length), bool)
  out['is_first'][:, 0] = True
  out['step_valid'] = np.zeros((len(episodes), length), np.float32)
  for n, e in enumerate(episodes):
    steps = len(e['image'])
    out['image'][n, :steps], out['action'][n, :steps] = e['image'], e['action']
    out['step_valid'][n, :steps] = 1.0
  return out


def make_estimate_fn(nets, starts: int, gamma: float) -> Callable:
  """A jitted `fn(wm_params, batch, key) -> {'estimate', 'disagreement'}`: Eq. 12's eps_hat (mean over
  the N*K rows) and the mean disagreement per step, for a batch from `expert_batch`."""

  @jax.jit
  def fn(wm, batch, key):
    n, length = batch['is_first'].shape
    horizon = length - starts
    embed = nets.encode(wm, batch['image'])
    post = nets.observe(wm, embed, batch['action'], batch['is_first'], None)  # posterior modes
    start = {k: post[k][:, :starts].reshape((n * starts,) + post[k].shape[2:]) for k in ('deter', 'stoch')}
    index = jnp.arange(starts)[:, None] + 1 + jnp.arange(horizon)[None]  # [K, H]: a_{k+h+1}
    actions = batch['action'][:, index]  # [N, K, H, A]
    valid = batch['step_valid'][:, index]  # [N, K, H]
    actions = jnp.moveaxis(actions.reshape(n * starts, horizon, -1), 1, 0)  # [H, N*K, A]
    valid = jnp.moveaxis(valid.reshape(n * starts, horizon), 1, 0)  # [H, N*K]
    img_step = lambda state, action, k, member: nets.img_step(wm, state, action, k, member)
    per_row, u = rollout_uncertainty(img_step, nets.rssm.ensemble, start, actions, valid, gamma, key)
    return {'estimate': jnp.mean(per_row), 'disagreement': jnp.sum(u * valid) / jnp.maximum(jnp.sum(valid), 1.0)}

  return fn


class UncertaintyBound:
  """Eq. 12 and the return gap at each evaluation (module docstring).

  The expert episodes are run once, from the first `config.train.bound_episodes` evaluation start
  seeds, when the first evaluation asks for them.
  """

  def __init__(self, parts, seeds: list[int]):
    self.parts, self.seeds = parts, list(seeds)
    cfg = parts.config
    self.gamma, self.starts = cfg.agent.gamma, cfg.train.bound_starts
    # lambda_u as the losses use it (0 in DreamerV2 mode, which has no penalty).
    from moto_jax.agent.actor_critic_loss import loss_settings

    self.penalty_scale = loss_settings(cfg.agent).actor['penalty_scale']
    self._fn = make_estimate_fn(parts.nets, self.starts, self.gamma)
    self._batch = None
    self.expert_returns = None

  def _experts(self):
    if self._batch is None:
      from moto_jax import suites

      episodes = suites.get(self.parts.config.domain).expert_episodes(self.parts.config, self.seeds)
      self.expert_returns = [discounted_return(e['reward'], self.gamma) for e in episodes]
      self.expert_success = float(np.mean([bool(e['success']) for e in episodes]))
      self._batch = expert_batch(episodes, self.starts)
    return self._batch

  def __call__(self, params, agent_episodes: list[dict], key: jax.Array) -> dict:
    """`bound/*` metrics; `agent_episodes` are the evaluation's, the first ones from the same seeds."""
    batch = self._experts()
    n = min(len(self.seeds), len(agent_episodes))
    agent = [discounted_return(e['reward'], self.gamma) for e in agent_episodes[:n]]
    out = jax.device_get(self._fn(params['wm'], batch, key))
    estimate = float(out['estimate'])
    return {
      'bound/expert_return': float(np.mean(self.expert_returns[:n])),
      'bound/agent_return': float(np.mean(agent)),
      'bound/return_gap': float(np.mean(np.asarray(self.expert_returns[:n]) - np.asarray(agent))),
      'bound/expert_success': self.expert_success,
      'bound/estimate': estimate,
      'bound/bound': 2.0 * self.penalty_scale * estimate,
      'bound/disagreement': float(out['disagreement']),
    }


def draw_bound(ax, evals: list[dict]) -> list[dict]:
  """Draws the return gap and the bound 2 lambda_u eps_hat of the evaluation records that have them
  against env steps on `ax` (eps_hat itself is in the records); returns those records."""
  rows = [e for e in evals if 'bound/estimate' in e]
  steps = [e['env_steps'] for e in rows]
  ax.plot(steps, [e['bound/return_gap'] for e in rows], marker='o', label='J(expert) - J(agent)')
  ax.plot(steps, [e['bound/bound'] for e in rows], marker='s', label='2 lambda_u eps_hat (Eq. 12 bound)')
  ax.axvline(0, color='gray', linestyle='--', linewidth=1)
  ax.set_xlabel('environment steps (0 = end of offline pre-training)', fontsize=8)
  ax.set_ylabel('discounted return')
  ax.grid(alpha=0.3)
  ax.set_ylim(bottom=min(0.0, *[e['bound/return_gap'] for e in rows]) if rows else 0.0)
  ax.legend(fontsize=7, loc='best')
  return rows


def plot_bound(evals: list[dict], path: str, title: str = '') -> str | None:
  """The return gap and Eq. 12's estimate against env steps (the paper's Fig. 6); None without data."""
  if not any('bound/estimate' in e for e in evals):
    return None
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 3.8))
  draw_bound(ax, evals)
  ax.set_title(title or 'Uncertainty bound (App. B)')
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
