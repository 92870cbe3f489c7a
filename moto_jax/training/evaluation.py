"""Running the agent in the environment: exploring episodes, evaluation, videos and plots."""

from __future__ import annotations

import os

import jax
import numpy as np

from moto_jax.agent import policy as policy_lib
from moto_jax.data import rollout as rollout_lib


class AgentActor:
  """Steps a jitted policy through single-environment episodes."""

  def __init__(self, parts):
    self._parts = parts
    self._act = policy_lib.make_act_fn(parts)

  def policy_fn(self, params, rng: jax.Array, explore: bool):
    """A `policy_fn(obs, info) -> action` for `rollout_lib.rollout`, fresh carry per episode."""
    carry = policy_lib.init_carry(self._parts.config, 1, self._parts.action_dim)
    first = [True]
    key = [rng]

    def fn(obs, info):
      nonlocal carry
      del info
      key[0], sub = jax.random.split(key[0])
      carry, action = self._act(params, carry, obs['image'][None], np.array([first[0]]), sub, explore=explore)
      first[0] = False
      return np.asarray(action[0])

    return fn

  def episode(self, env, params, seed: int, rng: jax.Array, explore: bool) -> dict:
    return rollout_lib.rollout(env, self.policy_fn(params, rng, explore), seed)

  def episodes(self, envs: list, params, seeds: list[int], rng: jax.Array, explore: bool) -> list[dict]:
    """`len(seeds) <= len(envs)` episodes in lock step, one batched policy call per step."""
    carry = policy_lib.init_carry(self._parts.config, len(envs), self._parts.action_dim)
    key = rng

    def fn(images, is_first):
      nonlocal carry, key
      key, sub = jax.random.split(key)
      carry, action = self._act(params, carry, images, is_first, sub, explore=explore)
      return np.asarray(action)

    return rollout_lib.rollout_batch(envs, fn, seeds)


def evaluate(
  actor: AgentActor, envs, params, seeds: list[int], rng: jax.Array, explore: bool = False
) -> tuple[dict, list[dict]]:
  """Deterministic-policy episodes from fixed start seeds; returns (summary, episodes). With
  `explore`, the policy acts as in the exploring episodes (`config.agent.explore_from`, `explore_noise`).

  `envs` is one environment or a list: with N of them, N episodes run in lock step with one
  batched policy call per step (evaluation then costs about one rendering per environment and
  step, not one policy call per episode and step). The result depends on N only through the
  posterior's random draws.
  """
  envs = list(envs) if isinstance(envs, (list, tuple)) else [envs]
  episodes = []
  for c in range(0, len(seeds), len(envs)):
    episodes += actor.episodes(envs, params, seeds[c : c + len(envs)], jax.random.fold_in(rng, c), explore=explore)
  return summarize(episode_rows(episodes), getattr(envs[0], 'target_tasks', ())), episodes


def episode_rows(episodes: list[dict]) -> dict:
  """What an evaluation's summary needs of each episode, as arrays with a row per episode (a
  multi-process run gathers these, not the episodes): success, return, the first action and, for
  multi-task suites (Kitchen's per-step target flags `tasks_done` [T+1, K]), the target tasks completed
  (in goal at some step), in goal at the episode's last step, which target entered its goal first
  and at which step (-1 for both where none did), and with per-step `tasks_progress` [T+1, K] how far
  each object came toward its goal (the episode's maximum; 1 = completed)."""
  rows = {
    'success': np.array([bool(e['success']) for e in episodes], bool),
    'return': np.array([float(e['reward'].sum()) for e in episodes], np.float64),
    'first_action': np.array([e['action'][1] for e in episodes], np.float32),
  }
  if episodes and 'tasks_done' in episodes[0]:
    rows['task_completed'] = np.array([e['tasks_done'].any(axis=0) for e in episodes], bool)  # [n, K]
    rows['tasks_completed'] = rows['task_completed'].sum(axis=1).astype(np.int64)
    rows['tasks_at_end'] = np.array([e['tasks_done'][-1].sum() for e in episodes], np.int64)
    first_step = [int(np.argmax(e['tasks_done'].any(axis=1))) if e['tasks_done'].any() else -1 for e in episodes]
    rows['first_task_step'] = np.array(first_step, np.int64)
    rows['first_task'] = np.array(
      [int(np.argmax(e['tasks_done'][s])) if s >= 0 else -1 for e, s in zip(episodes, first_step)], np.int64
    )
  if episodes and 'tasks_progress' in episodes[0]:
    rows['task_progress'] = np.array([np.max(e['tasks_progress'], axis=0) for e in episodes], np.float32)  # [n, K]
  return rows


def summarize(rows: dict, task_names=()) -> dict:
  """The evaluation's means over episodes from `episode_rows` (of one process or all). With the
  suite's target `task_names` (Kitchen), also each target's completion rate (`eval/task_<name>`) and
  the share of episodes that completed exactly k of them (`eval/episodes_k_tasks`); where the first
  failure happens: the share of episodes whose first completed target is each one
  (`eval/first_task_<name>`) and the mean step of that first completion (`eval/first_task_step`, over
  the episodes that completed one); and how far each target's object came toward its goal on average
  (`eval/progress_<name>`, 1 = completed in every episode), which separates a target never touched
  from one moved but not finished."""
  summary = {
    'eval/success_rate': float(np.mean(rows['success'])),
    'eval/return': float(np.mean(rows['return'])),
    'eval/episodes': float(len(rows['success'])),
  }
  if 'tasks_completed' in rows:
    summary['eval/tasks_completed'] = float(np.mean(rows['tasks_completed']))
    summary['eval/tasks_at_end'] = float(np.mean(rows['tasks_at_end']))
    for name, rate in zip(task_names, np.mean(rows['task_completed'], axis=0)):
      summary[f'eval/task_{name.replace(" ", "_")}'] = float(rate)
    if len(task_names):
      for k in range(len(task_names) + 1):
        summary[f'eval/episodes_{k}_tasks'] = float(np.mean(rows['tasks_completed'] == k))
      for k, name in enumerate(task_names):
        summary[f'eval/first_task_{name.replace(" ", "_")}'] = float(np.mean(rows['first_task'] == k))
    if 'task_progress' in rows:
      for name, moved in zip(task_names, np.mean(rows['task_progress'], axis=0)):
        summary[f'eval/progress_{name.replace(" ", "_")}'] = float(moved)
    started = rows['first_task_step'] >= 0
    if started.any():
      summary['eval/first_task_step'] = float(np.mean(rows['first_task_step'][started]))
  # What the policy does at the reset, beside what the demos do there (diag/demo_first_action_i).
  for i, v in enumerate(np.mean(rows['first_action'], axis=0)):
    summary[f'eval/first_action_{i}'] = float(v)
  return summary


def write_video(frames: np.ndarray, path: str, scale: int = 4, fps: int = 20) -> str:
  """Writes uint8 frames [N, H, W, 3] as an upscaled, looping GIF."""
  import imageio.v3 as iio

  frames = np.repeat(np.repeat(np.asarray(frames, np.uint8), scale, axis=1), scale, axis=2)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  iio.imwrite(path, frames, duration=1000 / fps, loop=0)
  return path


def plot_learning_curve(evals: list[dict], path: str, title: str = '') -> str:
  """Success rate, return and the learning diagnostics against env steps (0 = end of offline training)."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  steps = [e['env_steps'] for e in evals]
  # Kitchen: how far each target's object came toward its goal, beside the completions.
  progress = sorted({k for e in evals for k in e if k.startswith('eval/progress_')})
  fig, axes = plt.subplots(1, 4 + bool(progress), figsize=(18 + 4.5 * bool(progress), 3.6))
  for ax, key, label in zip(axes, ('eval/success_rate', 'eval/return'), ('success rate', 'return')):
    if all(key in e for e in evals):  # (an offline-only run's evaluations have neither)
      ax.plot(steps, [e[key] for e in evals], marker='o')
    ax.set_ylabel(label)
  panels = (
    (
      axes[2],
      'diagnostics (on the offline demos)',
      (
        ('diag/action_err_reset', 'action error at reset'),
        ('diag/action_err_middle', 'action error, middle'),
        ('diag/q_return_corr', 'corr(Q, data return)'),
      ),
    ),
    (
      axes[3],
      'does the value term act?',
      (
        ('diag/value_update_share', "value term's share of the update"),
        ('diag/bc_grad_share', 'BC share of the gradient norm'),
        ('diag/grad_cos', 'cos(value, BC gradients)'),
        ('diag/dqda_demo_cos', 'cos(dQ/da, toward demo)'),
        ('diag/q_prefers_demo', 'Q prefers demo action (0.5: no)'),
      ),
    ),
  )
  if progress:
    names = tuple((k, k[len('eval/progress_') :].replace('_', ' ')) for k in progress)
    panels += ((axes[4], 'target progress (1 = done)', names),)
  for ax, ylabel, keys in panels:
    for key, label in keys:
      if any(key in e for e in evals):
        ax.plot(
          [e['env_steps'] for e in evals if key in e], [e[key] for e in evals if key in e], marker='.', label=label
        )
    ax.set_ylabel(ylabel)
    if ax.lines:
      ax.legend(fontsize=7)
  for ax in axes:
    ax.axvline(0, color='gray', linestyle='--', linewidth=1)
    ax.text(0, 1.0, ' online ->', transform=ax.get_xaxis_transform(), va='top', fontsize=8, color='gray')
    ax.set_xlabel('environment steps (0 = end of offline pre-training)')
    ax.grid(alpha=0.3)
  for ax in axes[:: 4 if progress else 5]:  # success and progress: rates
    ax.set_ylim(-0.05, 1.05)
  fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
