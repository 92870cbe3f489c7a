"""The main job's start-up: everything a run needs before its first update (`Startup._start`).

`Startup` is a part of `loop.Trainer` (a mixin): it sets the run's mesh, offline data, networks and
restored state, episode store, update and evaluation functions, metrics log and provenance.
"""

from __future__ import annotations

import json
import os
import time

import jax

from moto_jax import agent, provenance, suites
from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.data.store import EpisodeStore
from moto_jax.errors import WorkdirError
from moto_jax.training import bound as bound_lib
from moto_jax.training import checkpoint as ckpt_lib
from moto_jax.training import (
  config_check,
  diagnostics,
  evaluation,
  heldout,
  offline_data,
  processes,
  refits,
  streams,
)
from moto_jax.training.logger import MetricWriter, NullWriter, read_metrics, truncate_metrics


class Startup:
  """The Trainer's start-up; see the module docstring."""

  def _start(self, config, workdir: str, log):
    """Everything a run needs before its first update, in order: the config checked against the
    devices, the offline data, the networks and the restored checkpoint, the episode store, the
    update and evaluation functions, and the metrics log cut back to the checkpoint."""
    self._check_devices(config.train)
    offline_names, held = self._offline_data(config, workdir, log)
    restored = self._restore(config, workdir, log)
    self._open_store(config, workdir, offline_names, log)
    self._build_steps(config, held, log)
    self._open_log(workdir, restored, log)

  def _check_devices(self, t):
    """The action size, the data-parallel mesh, and the batch and evaluation sizes against the devices."""
    self.session_seconds = dict(data=0.0, compile=0.0, evaluation=0.0)  # this session's parts of the wall clock
    self.action_dim = int(self.env.action_space.shape[0])
    self.eval_envs = [self.env]  # grown to config.train.eval_envs at the first evaluation
    self.evaluated = False  # in this session (its first evaluation compiles)
    n_dev = jax.device_count()
    if t.batch_size % n_dev:
      raise config_check.ConfigError(
        f'config.train.batch_size={t.batch_size} is not divisible by the {n_dev} devices of the data-parallel mesh'
      )
    if 0 < t.eval_episodes < processes.count():
      raise config_check.ConfigError(
        f'config.train.eval_episodes={t.eval_episodes}: an evaluation needs at least one episode in each of the '
        f'{processes.count()} processes'
      )
    self.mesh = agent.default_mesh()

  def _offline_data(self, config, workdir: str, log):
    """Finds or generates the dataset and lists the episodes this run trains on; returns (their
    names, the names held out for evaluation where the suite has no environment)."""
    t = config.train
    data_start = time.time()
    # Process 0 finds or generates the dataset, and lists a subset, before the others read them.
    if not processes.is_main():
      processes.barrier('offline data ready')
    self.offline_dir = offline_data.resolve(config, log=log)
    offline_names = offline_data.subset(config, self.offline_dir, workdir, log=log, write=processes.is_main())
    if processes.is_main():
      processes.barrier('offline data ready')
    # A dataset without a simulator (configs/dataset.py): its last episodes are held out for evaluation.
    self.heldout, held = None, []
    self.offline_only = getattr(suites.get(config.domain), 'offline_only', False)
    if self.offline_only:
      if t.env_steps:
        raise config_check.ConfigError(
          f'config.train.env_steps={t.env_steps}: suite {config.domain!r} has no environment to collect in; set 0'
        )
      offline_names, held = offline_data.hold_out(config, self.offline_dir, offline_names)
    self.session_seconds['data'] += time.time() - data_start
    return offline_names, held

  def _restore(self, config, workdir: str, log):
    """Builds the networks and their state, then restores the last complete checkpoint; returns it, or None."""
    t = config.train
    manifest_lib.check_settings(self.offline_dir, self.env.settings(), config.env.to_dict())
    self.rng = jax.random.PRNGKey(config.seed)
    self.parts = agent.build(config, self.action_dim)  # networks, optimizers, losses: once per run
    self.state = agent.create_train_state(self.parts, streams.key(self.rng, streams.PARAMS), self.mesh)
    self.checkpointer = ckpt_lib.Checkpointer(workdir, keep=t.keep_checkpoints, clean_temporary=processes.is_main())
    if self.checkpointer.removed_temporary:
      log(
        f'Removed {len(self.checkpointer.removed_temporary)} unfinished checkpoint folder(s) of an '
        f'interrupted save: {", ".join(self.checkpointer.removed_temporary)}'
      )
    restored = self.checkpointer.restore(self.state)
    self.counters = ckpt_lib.Counters()
    if restored is not None:
      self.state, self.counters, step = restored
      log(
        f'Resumed from checkpoint {step}: '
        + json.dumps({k: v for k, v in self.counters.to_json().items() if k != 'pending'})
      )
    return restored

  def _open_store(self, config, workdir: str, offline_names, log):
    """The episode store: the offline episodes and the online ones the checkpoint had seen."""
    t = config.train
    # The checkpoint is the truth: the store holds the online episodes it had seen; episodes saved
    # after it (collected before an interruption) are replayed in order, not collected again.
    online_dir = os.path.join(workdir, 'episodes')
    self.online_files = ep_lib.episode_files(online_dir)
    if self.counters.episodes > len(self.online_files):
      raise WorkdirError(
        f'{online_dir} has {len(self.online_files)} episode files; the checkpoint '
        f'counts {self.counters.episodes}. Online episodes were removed from the workdir: restore them, '
        'or start the run in another workdir.'
      )
    self.store = EpisodeStore(
      t.seq_len,
      online_dir=online_dir,
      online_limit=self.counters.episodes,
      online_fraction=t.online_fraction,
      skip_corrupt=config.data.skip_corrupt,
      cover_edges=t.cover_edges,
      image_shape=(config.env.image_size, config.env.image_size, 3),
      action_dim=self.action_dim,
      step_weights=suites.get(config.domain).step_weights(config),
    )
    if len(self.online_files) > self.counters.episodes:
      log(
        f'{len(self.online_files) - self.counters.episodes} online episode(s) saved after the checkpoint '
        f'will be replayed (their updates and evaluations run again).'
      )
    data_start = time.time()
    n = self.store.load_directory(self.offline_dir, part='offline', names=offline_names)
    self.session_seconds['data'] += time.time() - data_start
    self.prior = self.behaviour_prior(log)
    stats = self.store.stats()
    log(
      f'Episode store: {n} offline episodes ({stats["offline_steps"]} steps), '
      f'{stats["online_episodes"]} online ({stats["online_steps"]} steps), '
      f'{stats["bytes_per_frame"] / 1024:.1f} KiB per stored frame'
      + (f', {stats["skipped_corrupt"]} corrupt files skipped' if stats['skipped_corrupt'] else '')
    )
    self.wall_base = self.counters.wall_seconds
    self.seconds_base = dict(self.counters.seconds)
    self.finished_at_start = self.counters.phase == 'done'
    if self.store.num_steps('online') != self.counters.env_steps:
      raise WorkdirError(
        f'{online_dir}: the first {self.counters.episodes} episodes hold '
        f'{self.store.num_steps("online")} steps; the checkpoint counts {self.counters.env_steps}. '
        'Episode files were changed since the checkpoint: restore them, or start in another workdir.'
      )

  def _build_steps(self, config, held, log):
    """The jitted update, the acting policy, the refits and, on process 0, the diagnostics and bound."""
    t = config.train
    counts = agent.param_count(self.state)
    log('Parameters: ' + ', '.join(f'{k} {v:,}' for k, v in counts.items()))
    self.update = agent.make_update_fn(self.parts, self.mesh)
    self.actor = evaluation.AgentActor(self.parts)
    self.refits = refits.Refits(self.parts, self.mesh)
    # The evaluation's diagnostics and bound: process 0 alone, on its own devices (processes.py).
    self.diag_mesh = self.mesh if processes.count() == 1 else processes.local_mesh()
    self.diagnostics = self.bound = None
    if held and processes.is_main():
      episodes = [ep_lib.load_episode(os.path.join(self.offline_dir, name)) for name in held]
      self.heldout = heldout.HeldOut(self.parts, episodes, mesh=self.diag_mesh)
      log(f'Held out for evaluation: {len(held)} episodes ({", ".join(held)})')
    if processes.is_main():
      demos = diagnostics.demo_episodes(
        self.store.episodes('offline'), gamma=config.agent.gamma, multiple=self.diag_mesh.devices.size
      )
      self.diagnostics = diagnostics.Diagnostics(self.parts, demos, mesh=self.diag_mesh)
      self.bound = (
        bound_lib.UncertaintyBound(self.parts, self.eval_seeds()[: t.bound_episodes]) if t.bound_episodes else None
      )

  def _open_log(self, workdir: str, restored, log):
    """The metrics log, cut back to the checkpoint, and the provenance of this session."""
    # Without a checkpoint the run starts over: what a killed earlier session logged goes too.
    # Process 0 writes the log.
    self.writer = NullWriter()
    if processes.is_main():
      dropped = truncate_metrics(workdir, self.counters.metrics_bytes if restored is not None else 0)
      if dropped:
        log(f'metrics.jsonl: {dropped} bytes logged after the checkpoint dropped; they are logged again.')
      self.writer = MetricWriter(workdir)
    processes.barrier('metrics log cut to the checkpoint')
    self.pending = list(self.counters.pending)  # per-step metrics since the last log step
    self.nonfinite_run = 0
    self.last_ckpt_time = time.time()
    self.last_ckpt_grad = self.counters.grad_steps
    self.evals = [r for r in read_metrics(workdir) if r.get('phase') == 'eval']
    # The code, libraries and machine of the session that trains (a session that finds the run
    # finished keeps the provenance of the one that finished it); every commit a run ran at.
    self.provenance = provenance.collect()
    if self.finished_at_start:
      previous = self._read_summary().get('provenance')
      self.provenance = previous or self.provenance
    elif not self.counters.commits or self.counters.commits[-1] != self.provenance['commit']:
      self.counters.commits.append(self.provenance['commit'])

  def behaviour_prior(self, log) -> dict:
    """How many offline episodes carry the behaviour prior (Eq. 10); warns when none does."""
    from moto_jax import suites

    episodes = self.store.episodes('offline')
    carrying = sum(ep_lib.carries_prior(e) for e in episodes)
    rule = suites.get(self.config.domain).prior_rule(self.config)
    prior = dict(
      episodes=len(episodes),
      episodes_with_prior=int(carrying),
      rule=rule,
      active=bool(carrying) and self.config.agent.bc_scale > 0 and self.config.agent.mode != 'dreamerv2',
    )
    if not carrying:
      log(
        f'WARNING: none of the {len(episodes)} offline episodes in {self.offline_dir} earns the behaviour prior '
        f'(bc_weight 0 everywhere; an episode earns it with {rule}): Eq. 10 is off for this data, and the actor '
        + (
          'has nothing to clone (agent.mode=bc).' if self.config.agent.mode == 'bc' else 'learns from the critic alone.'
        )
      )
    return prior
