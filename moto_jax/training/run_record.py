"""What a run reports about itself: its wall clock over all sessions (split into data, compile,
evaluation and training), summary.json, and the closing line of the console.

`RunRecord` is a part of `loop.Trainer` (a mixin); `done_line` is the console's last line.
"""

from __future__ import annotations

import json
import os
import time

from moto_jax.training import processes


class RunRecord:
  """The Trainer's clock and summary; see the module docstring."""

  def wall_seconds(self) -> float:
    """Wall clock of the run over all its sessions, this one counted from its start (a session
    that starts on a finished run adds nothing)."""
    if self.finished_at_start:
      return self.wall_base
    return self.wall_base + time.time() - self.session_start

  def _read_summary(self) -> dict:
    path = os.path.join(self.workdir, 'summary.json')
    if not os.path.exists(path):
      return {}
    with open(path) as f:
      return json.load(f)

  def seconds(self) -> dict:
    """The run's wall clock split into data, compile, evaluation and training (the rest), over all sessions."""
    parts = {
      k: self.seconds_base.get(k, 0.0) + (0.0 if self.finished_at_start else v) for k, v in self.session_seconds.items()
    }
    if 'unattributed' in self.seconds_base or (self.wall_base and not self.seconds_base):
      # Sessions checkpointed before the wall clock was split: their time is not training alone.
      parts['unattributed'] = self.seconds_base.get('unattributed', self.wall_base)
    parts['training'] = max(0.0, self.wall_seconds() - sum(parts.values()))
    return parts

  def summary(self) -> dict:
    last = self.evals[-1] if self.evals else {}
    offline_end = [e for e in self.evals if e['env_steps'] == 0]
    online = [e['eval/success_rate'] for e in self.evals if e['env_steps'] > 0 and 'eval/success_rate' in e]
    self.counters.wall_seconds = self.wall_seconds()
    self.counters.seconds = self.seconds()
    s = dict(
      domain=self.config.domain,
      task=self.config.task,
      preset=self.config.preset,
      seed=self.config.seed,
      **{k: v for k, v in self.counters.to_json().items() if k not in ('pending', 'metrics_bytes')},
      wall_minutes=self.counters.wall_seconds / 60,
      offline_success_rate=offline_end[-1].get('eval/success_rate') if offline_end else None,
      min_online_success_rate=min(online) if online else None,
      final_success_rate=last.get('eval/success_rate'),
      final_return=last.get('eval/return'),
      final_tasks_completed=last.get('eval/tasks_completed'),  # Kitchen: target tasks per episode
      eval_episodes=int(last.get('eval/episodes', 0)),
      behaviour_prior=self.prior,
      provenance=self.provenance,
    )
    if processes.is_main():
      with open(os.path.join(self.workdir, 'summary.json'), 'w') as f:
        json.dump(s, f, indent=2)
    return s


def done_line(config, summary: dict, evals: list[dict], workdir: str, session_seconds: float) -> str | None:
  """The console's closing line of a finished run (None for an unfinished one)."""
  if summary['phase'] != 'done':
    return None
  where = f'Done: {config.domain}/{config.task} seed {config.seed}, {summary["wall_minutes"]:.1f} min wall clock'
  if summary['final_success_rate'] is None and evals:
    last = evals[-1]  # an offline-only run: the held-out episodes
    return (
      f'{where}, {summary["grad_steps"]} gradient steps, offline only. On {int(last.get("heldout/episodes", 0))} '
      f'held-out episodes: action error {last.get("diag/action_err_middle", float("nan")):.3f} (middle third), '
      f'reward error {last.get("heldout/reward_mae", float("nan")):.3f}, open-loop image MSE '
      f'{last.get("heldout/openloop_image_mse", float("nan")):.4f}. Metrics: {os.path.join(workdir, "metrics.jsonl")}'
    )
  if summary['final_success_rate'] is None:
    return None
  rate, off = summary['final_success_rate'], summary['offline_success_rate']
  tasks = summary.get('final_tasks_completed')
  return (
    f'{where} (this session {session_seconds / 60:.1f}): success rate {rate:.2f}'
    + (f' and {tasks:.2f} target tasks per episode' if tasks is not None else '')
    + f' over {summary["eval_episodes"]} evaluation episodes after {summary["grad_steps"]} gradient steps and '
    f'{summary["env_steps"]} env steps'
    + (f' (offline end {off:.2f})' if off is not None else '')
    + f'. Learning curve: {os.path.join(workdir, "learning_curve.png")}'
  )
