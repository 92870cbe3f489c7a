"""The main job: offline pre-training, then online fine-tuning with periodic evaluation.

`train_and_evaluate(config, workdir)` is idempotent: run it again on the same workdir
and it resumes from the last complete checkpoint, and the resumed run is the run that was
never interrupted (same metrics, evaluations and final parameters on the same machine):

* Every random stream derives from `(config.seed, counter)` (batches from the gradient step,
  exploring episodes from the episode index, evaluations from their count); training/streams.py
  names each.
* The online unit of work is one exploring episode, its `train.updates_per_episode` updates and
  its evaluation if one is due; the checkpoint records how much of the current unit is left
  (`updates_due`, `eval_due`), so a stop in the middle of a unit finishes it on resume.
* Online episodes are persisted as they finish. The checkpoint is the truth: the store loads the
  episodes it had seen, and those saved after it are replayed in order (read back, not collected
  again), with their updates and evaluations.
* The checkpoint also records the length of metrics.jsonl and the step metrics not yet logged;
  on resume the log is cut back to that length, so the records after it are written once.
  TensorBoard event files are append-only and may show the replayed steps twice.
"""

from __future__ import annotations

import errno
import os
import time

import jax
import numpy as np
import tqdm

from moto_jax import agent, provenance
from moto_jax.data import episodes as ep_lib
from moto_jax.data.rollout import episode_seed
from moto_jax.suites import make_env
from moto_jax.training import (
  config_check,
  evaluating,
  processes,
  run_record,
  startup,
  stopping,
  streams,
  workdir_lock,
)
from moto_jax.training.stopping import DiskFullError, NonFiniteError, _StopRequested  # noqa: F401 (re-exported)
from moto_jax.xla_cpu import allocator

BATCH_KEYS = evaluating.BATCH_KEYS


def episode_record(episode: dict, target_tasks=()) -> dict:
  """The online log's record of one exploring episode: its return and success, and on Kitchen the
  target tasks it completed (each, and how many) and how far each target's object came toward its goal."""
  record = {'episode/return': float(episode['reward'].sum()), 'episode/success': float(bool(episode['success']))}
  if 'tasks_done' in episode:
    done = np.asarray(episode['tasks_done']).any(axis=0)
    record['episode/tasks_completed'] = float(done.sum())
    record.update({f'episode/task_{n.replace(" ", "_")}': float(d) for n, d in zip(target_tasks, done)})
  if 'tasks_progress' in episode:
    moved = np.max(np.asarray(episode['tasks_progress']), axis=0)
    record.update({f'episode/progress_{n.replace(" ", "_")}': float(m) for n, m in zip(target_tasks, moved)})
  return record


def progress_bar(total: int, initial: int, desc: str, unit: str):
  """A phase's progress bar (process 0's only)."""
  return tqdm.tqdm(
    total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, disable=not processes.is_main()
  )


class Trainer(startup.Startup, evaluating.Evaluating, run_record.RunRecord):
  """Holds the run's state between phases; see `train_and_evaluate`."""

  def __init__(self, config, workdir: str, log=print):
    self.config, self.workdir, self.log = config, workdir, log
    self.session_start = time.time()
    self.stop = _StopRequested()  # entered (signals handled) by `train_and_evaluate`
    self.env = make_env(config)
    try:
      self._start(config, workdir, log)
    except BaseException:
      self.env.close()  # a failed start (bad data, a changed workdir) leaves no renderer to its exit
      raise

  def stopping(self) -> bool:
    """Whether a stop was requested (in a multi-process run: in any process; all call this at the
    same points of the run, so all stop at the same one)."""
    return processes.any_flag(self.stop.requested)

  # --- updates ---------------------------------------------------------------

  def _batch(self, attempt: int = 0):
    """The batch of the next gradient step; `attempt` > 0 (a retry after a non-finite update) draws fresh windows."""
    step = self.counters.grad_steps
    entropy = [self.config.seed, step] + ([attempt] if attempt else [])
    if jax.process_count() > 1:  # multi-host: each process samples its own share of the global batch
      entropy = [self.config.seed, step, attempt, streams.HOST_BATCH + jax.process_index()]
    rng = np.random.default_rng(entropy)
    batch = self.store.sample(self.config.train.batch_size // jax.process_count(), rng)
    # The update sees the standard keys only (domains may store more, e.g. Kitchen's task flags).
    return agent.shard_batch({k: batch[k] for k in BATCH_KEYS}, self.mesh)

  def compile(self):
    """Compiles the update ahead of time and reports the compile time and its cost."""
    t0 = time.time()
    batch = self._batch()
    lowered = self.update.lower(self.state, batch, streams.key(self.rng, streams.COMPILE))
    compiled = lowered.compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get('flops', float('nan'))
    self.session_seconds['compile'] += time.time() - t0
    self.log(
      f'Compiled update in {time.time() - t0:.1f} s ({flops / 1e9:.1f} GFLOP per update per device, '
      f'{jax.device_count()} {jax.devices()[0].platform} device(s); {allocator.status()}).'
    )
    self.update = compiled

  def train_steps(self, n: int, phase: str, bar=None) -> int:
    """Up to `n` gradient steps (fewer if a stop is requested); returns how many were done."""
    t = self.config.train
    done = 0
    for _ in range(n):
      step = self.counters.grad_steps
      # A retry after a skipped update uses fresh windows and a fresh key: the same batch and key
      # would fail the same way. Without skips the streams are those of (seed, step) alone.
      attempt = self.nonfinite_run
      key = streams.key(self.rng, streams.UPDATE, step)
      if attempt:
        key = jax.random.fold_in(key, attempt)
      self.state, metrics = self.update(self.state, self._batch(attempt), key)
      if bool(metrics['nonfinite']):
        self.counters.nonfinite_skipped += 1
        self.nonfinite_run += 1
        if self.nonfinite_run >= t.max_nonfinite:
          host = jax.device_get(metrics)
          bad = sorted(k for k, v in host.items() if k != 'nonfinite' and not np.all(np.isfinite(v)))
          last = self.checkpointer.latest_step()
          where = (
            f'The last checkpoint ({last}) in {self.checkpointer.directory} holds the state before them.'
            if last is not None
            else 'No checkpoint was written yet: the run has no good state on disk.'
          )
          raise NonFiniteError(
            f'{self.nonfinite_run} consecutive updates had non-finite losses at gradient step {step} '
            f'(each on fresh data); stopping. Non-finite in the last one: {", ".join(bad) or "?"}. {where} '
            f'Check the data (rewards, actions) and the learning rates.'
          )
        continue
      self.nonfinite_run = 0
      self.counters.grad_steps += 1
      stopping.fault_point('grad_step', self.counters.grad_steps)
      done += 1
      self.pending.append(metrics)
      if bar is not None:
        bar.update(1)
      if self.counters.grad_steps % t.log_every == 0:
        self.flush_metrics(phase)
      if self.stopping():
        break
    return done

  def flush_metrics(self, phase: str):
    if not self.pending:
      return
    host = jax.device_get(self.pending)
    self.pending = []
    # float64 means: the same value whether the steps' metrics come from the device or a checkpoint.
    mean = {k: float(np.mean(np.asarray([m[k] for m in host], np.float64))) for k in host[0]}
    mean['train/nonfinite_skipped'] = self.counters.nonfinite_skipped
    mean['train/env_steps'] = self.counters.env_steps
    self.writer.write(self.counters.grad_steps, phase, mean, console=True, echo=tqdm.tqdm.write)

  def maybe_checkpoint(self, force: bool = False):
    t = self.config.train
    due = (
      time.time() - self.last_ckpt_time > 60 * t.checkpoint_every_minutes
      or self.counters.grad_steps - self.last_ckpt_grad >= t.checkpoint_every_steps
    )
    if force or processes.broadcast_flag(due):  # process 0's clock decides for all
      self.counters.wall_seconds = self.wall_seconds()
      self.counters.seconds = self.seconds()
      self.counters.metrics_bytes = self.writer.position()
      self.counters.pending = [{k: float(v) for k, v in m.items()} for m in jax.device_get(self.pending)]
      self.checkpointer.save(self.counters.grad_steps + self.counters.env_steps, self.state, self.counters)
      self.last_ckpt_time, self.last_ckpt_grad = time.time(), self.counters.grad_steps

  # --- phases ------------------------------------------------------------------

  def offline_phase(self):
    t = self.config.train
    remaining = t.offline_steps - self.counters.grad_steps
    with progress_bar(t.offline_steps, self.counters.grad_steps, 'offline', 'step') as bar:
      while remaining > 0 and not self.stopping():
        chunk = min(remaining, t.checkpoint_every_steps)
        self.train_steps(chunk, 'offline', bar)
        remaining = t.offline_steps - self.counters.grad_steps
        self.maybe_checkpoint()
    if not self.stopping():
      self.flush_metrics('offline')
      self.refit()
      self.run_evaluation()
      self.counters.phase = 'online'
      self.maybe_checkpoint(force=True)

  def refit(self):
    """`train.refit_steps` actor-critic steps on the frozen world model (training/refits.py). Runs
    once, at the end of the offline phase; no checkpoint falls between it and the offline-end one,
    so a resumed run repeats it from the same state."""
    t = self.config.train
    if t.refit_steps == 0:
      return
    start = time.time()
    episodes = self.refits.offline_episodes(self.store)
    self.log(
      f'Refit: {t.refit_steps} actor-critic steps on the frozen world model over {len(episodes)} '
      f'offline episodes (one compiled loop without a progress bar; `small`: ~2 min on a slow 2-core CPU)...'
    )
    metrics = self.run_refit(t.refit_steps, episodes, streams.key(self.rng, streams.REFIT_OFFLINE))
    self.log(
      f'Refit done in {time.time() - start:.0f} s (compile included): '
      f'actor/bc_loglik={metrics["actor/bc_loglik"]:.3g} critic/loss={metrics["critic/loss"]:.3g}'
    )

  def online_refit(self):
    """`train.online_refit_steps` refit steps after an online episode's updates, with the world
    model as those updates left it. Part of the episode's unit (`counters.refit_due`)."""
    t = self.config.train
    episodes, capacity = self.refits.online_episodes(self.store, t.env_steps)
    metrics = self.run_refit(
      t.online_refit_steps, episodes, streams.key(self.rng, streams.REFIT_ONLINE, self.counters.episodes), capacity
    )
    if self.counters.episodes % t.eval_every_episodes == 0:
      self.log(
        f'[refit {self.counters.env_steps}] {t.online_refit_steps} steps over {len(episodes)} episodes: '
        f'actor/bc_loglik={metrics["actor/bc_loglik"]:.3g} critic/loss={metrics["critic/loss"]:.3g}'
      )

  def run_refit(self, steps: int, episodes: list[dict], key: jax.Array, capacity: int | None = None) -> dict:
    self.state, metrics = self.refits.run(self.state, steps, episodes, key, capacity)
    # Like evaluation records: `step` counts env steps, both counts are fields.
    self.writer.write(
      self.counters.env_steps,
      'refit',
      {
        **metrics,
        'episodes': float(len(episodes)),
        'grad_steps': float(self.counters.grad_steps),
        'env_steps': float(self.counters.env_steps),
      },
    )
    return metrics

  def online_phase(self):
    t = self.config.train
    with progress_bar(t.env_steps, self.counters.env_steps, 'online', 'env step') as bar:
      self.finish_unit()  # a unit a stop interrupted
      while self.counters.env_steps < t.env_steps and not self.stopping():
        # One exploring episode per process (global index: the unit's first + the process's index).
        first, me = self.counters.episodes, processes.index()
        path = os.path.join(self.workdir, 'episodes', ep_lib.episode_name(first + me))
        replayed = os.path.exists(path)
        if replayed:  # saved after the checkpoint: replay it
          mine = ep_lib.load_episode(path)
        else:
          seed = episode_seed(self.config.seed + streams.EXPLORE_SEED, first + me)
          mine = self.actor.episode(
            self.env,
            processes.local_copy(agent.acting_params(self.state)),
            seed,
            streams.key(self.rng, streams.EXPLORE, first + me),
            explore=True,
          )
        # Every process's store holds every process's episodes in the same order; each saves its own.
        for q, episode in enumerate(processes.gather_episodes(mine)):
          self.store.add(episode, part='online', persist=q == me and not replayed)
          steps = len(episode['image']) - 1
          self.counters.episodes += 1
          stopping.fault_point('episode', self.counters.episodes)
          self.counters.env_steps += steps
          bar.update(steps)
          record = episode_record(episode, getattr(self.env, 'target_tasks', ()))
          self.writer.write(self.counters.env_steps, 'online', record)
        self.counters.updates_due = t.updates_per_episode
        self.counters.refit_due = t.online_refit_steps > 0
        # An evaluation when the unit reaches a multiple of train.eval_every_episodes.
        self.counters.eval_due = self.counters.episodes // t.eval_every_episodes > first // t.eval_every_episodes
        self.finish_unit()
        self.maybe_checkpoint()
    if not self.stopping():
      self.flush_metrics('online')
      self.counters.phase = 'done'
      if not self.evals or self.evals[-1]['env_steps'] != self.counters.env_steps:
        self.run_evaluation()
      self.maybe_checkpoint(force=True)

  def finish_unit(self):
    """The rest of the latest episode's unit: its updates, its refit, then its evaluation if one is due."""
    while self.counters.updates_due > 0 and not self.stopping():
      self.counters.updates_due -= self.train_steps(self.counters.updates_due, 'online')
    if self.counters.refit_due and not self.stopping():
      self.online_refit()
      self.counters.refit_due = False
    if self.counters.eval_due and not self.stopping():
      self.run_evaluation()
      self.counters.eval_due = False

  def close(self):
    if not self.stop.requested:  # (no collective here: close also runs after an error)
      self.flush_metrics(self.counters.phase)
    self.writer.close()
    self.checkpointer.close()
    for env in self.eval_envs[1:]:
      env.close()
    self.env.close()


def train_and_evaluate(config, workdir: str, allow_config_change: bool = False, log=print) -> dict:
  """Runs (or resumes) the whole job in `workdir`; returns the summary."""
  config_check.validate(config)
  lock = workdir_lock.acquire(workdir, jax.process_index())  # one run per workdir; dropped at exit
  try:
    return _train_and_evaluate(config, workdir, allow_config_change, log)
  finally:
    workdir_lock.release(lock)


def _train_and_evaluate(config, workdir: str, allow_config_change: bool, log) -> dict:
  config_check.record(config, workdir, allow_change=allow_config_change, write=False)
  trainer = Trainer(config, workdir, log=log)
  # The start succeeded: this config is the run's (process 0 records it).
  config_check.record(config, workdir, allow_change=True, write=processes.is_main())
  if trainer.counters.phase == 'done' and trainer.counters.env_steps < config.train.env_steps:
    trainer.counters.phase = 'online'  # a finished run given a bigger budget continues
    trainer.finished_at_start = False
    trainer.provenance = provenance.collect()
    trainer.counters.commits.append(trainer.provenance['commit'])
    log(f'Extending a finished run to {config.train.env_steps} env steps.')
  t0 = time.time()
  try:
    with _StopRequested() as stop:
      trainer.stop = stop
      if trainer.counters.phase != 'done':
        trainer.compile()
      if trainer.counters.phase == 'offline':
        trainer.offline_phase()
      if trainer.counters.phase == 'online' and not trainer.stopping():
        trainer.online_phase()
      if trainer.stopping():
        trainer.maybe_checkpoint(force=True)  # unlogged step metrics are kept in it, not flushed
        log(f'Stopped at {trainer.counters.to_json()}; run the same command to resume.')
      summary = trainer.summary()
  except OSError as e:
    if e.errno != errno.ENOSPC:
      raise
    last = trainer.checkpointer.latest_step()
    raise DiskFullError(
      f'No space left on the device while writing {e.filename or "to " + workdir}. Free some space and '
      f'run the same command: the run resumes from '
      + (f'checkpoint {last}' if last is not None else 'the start (no checkpoint was written yet)')
      + ', and the episodes already saved are kept.'
    ) from e
  finally:
    try:
      trainer.close()
    except OSError as e:  # flushing the last metrics may fail on the same full disk
      log(f'While closing the run: {e}')
  line = run_record.done_line(config, summary, trainer.evals, workdir, time.time() - t0)
  if line:
    log(line)
  return summary
