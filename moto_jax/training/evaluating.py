"""The main job's evaluations: each a set of evaluation episodes (or, without an environment, the
held-out episodes), then on process 0 the diagnostics, the uncertainty bound, the record in
metrics.jsonl, a video, the learning-curve and bound plots, and a timing line.

`Evaluating` is a part of `loop.Trainer` (a mixin): it reads the run's config, state, counters,
store, environments, actor and writer, and appends each evaluation's summary to `self.evals`.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
import tqdm

from moto_jax import agent
from moto_jax.data import episodes as ep_lib
from moto_jax.data.rollout import episode_seed
from moto_jax.suites import make_env
from moto_jax.training import bound as bound_lib
from moto_jax.training import evaluation, processes, streams

BATCH_KEYS = ep_lib.STEP_KEYS + ('bc_weight',)  # the keys of the update's batch


class Evaluating:
  """The Trainer's evaluations; see the module docstring."""

  def eval_seeds(self) -> list[int]:
    return [episode_seed(self.config.seed, streams.EVAL_STARTS + k) for k in range(self.config.train.eval_episodes)]

  def run_evaluation(self):
    t = self.config.train
    if self.offline_only:  # no environment: the held-out episodes (process 0 evaluates them)
      summary = {'env_steps': self.counters.env_steps, 'grad_steps': self.counters.grad_steps}
      if self.heldout is None:
        self.evals.append(summary)
        self.counters.evals += 1
        return
      clock = [('start', time.monotonic())]
      acting = agent.acting_params(self.state)
      key = jax.random.fold_in(streams.key(self.rng, streams.DIAGNOSTICS), self.counters.evals)
      summary = {**self.heldout(acting, key), **summary}
      clock.append((f'{self.heldout.episodes} held-out episodes', time.monotonic()))
      self.evals.append(summary)
      self._write_evaluation(summary, [], clock)
      self.counters.evals += 1
      return
    if t.eval_episodes == 0:
      return
    # Each process runs its share of the start seeds; the summary counts every process's episodes.
    seeds = self.eval_seeds()[processes.index() :: processes.count()]
    key = streams.key(self.rng, streams.EVAL)
    if processes.count() > 1:
      key = jax.random.fold_in(key, processes.index())
    clock = [('start', time.monotonic())]  # the console's timing line (not a metric)
    while len(self.eval_envs) < min(t.eval_envs, len(seeds)):
      self.eval_envs.append(make_env(self.config))
    clock.append(('new environments', time.monotonic()))
    acting = processes.local_copy(agent.acting_params(self.state))
    summary, episodes = evaluation.evaluate(self.actor, self.eval_envs, acting, seeds, key)
    if processes.count() > 1:
      summary = evaluation.summarize(
        {k: processes.gather_rows(v) for k, v in evaluation.episode_rows(episodes).items()},
        getattr(self.env, 'target_tasks', ()),
      )
    n = int(summary['eval/episodes'])
    clock.append((f'{n} episode' + 's' * (n != 1), time.monotonic()))
    summary['env_steps'] = self.counters.env_steps
    summary['grad_steps'] = self.counters.grad_steps
    if processes.is_main():
      self._diagnose(summary, acting, episodes, clock)
    self.evals.append(summary)
    if processes.is_main():
      self._write_evaluation(summary, episodes, clock)
    self.counters.evals += 1

  def _diagnose(self, summary: dict, acting, episodes: list[dict], clock: list):
    """The diagnostics and the bound of an evaluation (process 0, on its devices), into `summary`."""
    here = lambda tree: tree if processes.count() == 1 else agent.replicate(processes.local_copy(tree), self.diag_mesh)
    params, acting = here(self.state.params), here(acting)
    diag_rng = np.random.default_rng([self.config.seed, streams.DIAGNOSTIC_BATCH, self.counters.evals])
    batch = self.store.sample(self.config.train.batch_size, diag_rng)
    summary.update(
      self.diagnostics(
        params,
        {k: batch[k] for k in BATCH_KEYS},
        jax.random.fold_in(streams.key(self.rng, streams.DIAGNOSTICS), self.counters.evals),
        acting=acting,
        actor_opt_state=here(self.state.opt_state['actor']),
        episodes=episodes,
        step=self.counters.grad_steps,
      )
    )
    clock.append(('diagnostics', time.monotonic()))
    if self.bound is not None:
      summary.update(
        self.bound(params, episodes, jax.random.fold_in(streams.key(self.rng, streams.BOUND), self.counters.evals))
      )
      clock.append(('bound', time.monotonic()))

  def _write_evaluation(self, summary: dict, episodes: list[dict], clock: list):
    """The evaluation's record, video and plots (process 0), and its timing line."""
    t = self.config.train
    self.writer.write(self.counters.env_steps, 'eval', summary, console=True, echo=tqdm.tqdm.write)
    video = bool(episodes) and self.counters.evals % t.video_every_evals == 0
    if video:
      frames = np.concatenate([e['image'] for e in episodes[:2]])
      evaluation.write_video(frames, os.path.join(self.workdir, 'videos', f'eval_{self.counters.env_steps:08d}.gif'))
    evaluation.plot_learning_curve(
      self.evals,
      os.path.join(self.workdir, 'learning_curve.png'),
      title=f'{self.config.domain}/{self.config.task} ({self.config.preset})',
    )
    bound_lib.plot_bound(
      self.evals,
      os.path.join(self.workdir, 'bound.png'),
      title=f'Uncertainty bound (App. B): {self.config.domain}/{self.config.task}',
    )
    clock.append(('video and plots' if video else 'plots', time.monotonic()))
    notes = [f'{name} {b - a:.0f} s' for (_, a), (name, b) in zip(clock, clock[1:]) if b - a >= 0.5]
    notes += [] if self.evaluated else ['compiles included']
    self.session_seconds['evaluation'] += clock[-1][1] - clock[0][1]
    self.log(f'  evaluation took {clock[-1][1] - clock[0][1]:.0f} s' + (f' ({", ".join(notes)})' if notes else ''))
    self.evaluated = True
