"""Checkpoints of the whole train state and the run's counters (orbax).

Orbax writes each checkpoint to a temporary directory and renames it when complete,
so a run killed mid-save never leaves a checkpoint that `latest_step()` would pick.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from etils import epath
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from moto_jax.training import stopping

TMP_MARK = '.orbax-checkpoint-tmp'  # in the name of a save's folder until it completes


@dataclasses.dataclass
class Counters:
  """Progress of a run; everything else (rng streams, episode seeds) derives from these."""

  grad_steps: int = 0
  env_steps: int = 0
  episodes: int = 0
  evals: int = 0
  phase: str = 'offline'  # 'offline' | 'online' | 'done'
  nonfinite_skipped: int = 0
  wall_seconds: float = 0.0  # wall clock of the run so far, over all its sessions (data, compile included)
  # Parts of it: 'data' (finding or generating the offline data, loading it), 'compile' (the
  # update) and 'evaluation' (evaluations, their compiles included); the rest is training.
  seconds: dict = dataclasses.field(default_factory=dict)
  commits: list = dataclasses.field(default_factory=list)  # the code's commit in each session that trained
  # The unit of online work is an episode, its updates and its evaluation. Where a unit stopped:
  updates_due: int = 0  # updates of the latest episode not yet done
  refit_due: bool = False  # its refit (train.online_refit_steps) not yet done
  eval_due: bool = False  # its evaluation not yet done
  # What a resume needs to log exactly what an uninterrupted run logs:
  metrics_bytes: int = -1  # length of metrics.jsonl at this checkpoint (-1: unknown, older runs)
  pending: list = dataclasses.field(default_factory=list)  # per-step metrics not yet logged (host floats)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> 'Counters':
    return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


class Checkpointer:
  """Saves and restores `(train_state, counters)` under `workdir/checkpoints`."""

  def __init__(self, workdir: str, keep: int = 3, clean_temporary: bool = False):
    """`clean_temporary`: remove the temporary folders of saves a crash interrupted (orbax's
    `*.orbax-checkpoint-tmp*`). Only the run that writes the checkpoints should ask for it."""
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.removed_temporary = []
    if clean_temporary and os.path.isdir(self.directory):
      # Done here, synchronously: orbax's own `cleanup_tmp_directories` runs in the background.
      for name in sorted(os.listdir(self.directory)):
        if TMP_MARK in name:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
          self.removed_temporary.append(name)
    if jax.process_count() > 1:  # one process cleans (clean_temporary); none opens the folder before
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices('checkpoint folder cleaned')
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'counters'))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, counters: Counters) -> None:
    if step in self._manager.all_steps():
      # Same progress, new counters (e.g. the phase changed): replace it. Older
      # checkpoints stay, so a crash between delete and save loses nothing.
      self._manager.delete(step)
    stopping.fault_point('checkpoint', step)  # (crash tests: a stop inside the save)
    self._manager.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), counters=ocp.args.JsonSave(counters.to_json()))
    )
    self._manager.wait_until_finished()

  def read_counters(self, step: int | None = None) -> dict:
    """The counters of a checkpoint (default: the latest), without restoring the state."""
    step = self._manager.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(counters=ocp.args.JsonRestore()))
    return restored['counters']

  def restore(self, abstract_state, step: int | None = None):
    """Returns `(state, counters, step)` of `step` (default: latest), or None if there is none.

    `abstract_state` is a train state (or its `jax.ShapeDtypeStruct` tree) that fixes the
    structure, dtypes and shardings of the restored arrays.
    """
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f'No checkpoint {step} in {self.directory}; have {self.all_steps()}')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    saved = self._saved_fields(step)
    legacy = hasattr(abstract_state, 'actor_ema') and saved is not None and 'actor_ema' not in saved
    if legacy:
      # Saved before the state had an averaged actor: restore the rest, start the average at the actor.
      target = {f: getattr(target, f) for f in saved}
    restored = self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), counters=ocp.args.JsonRestore())
    )
    state = restored['state']
    if legacy:
      state = abstract_state.replace(**state, actor_ema=jax.tree.map(jnp.copy, state['params']['actor']))
    return state, Counters.from_json(restored['counters']), step

  def _saved_fields(self, step: int) -> set[str] | None:
    """The top-level fields of a checkpoint's saved state (None if its metadata cannot be read)."""
    try:
      meta = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / 'state')
      return set(meta.keys())
    except Exception:  # noqa: BLE001 - metadata layout differs between orbax versions
      return None

  def close(self):
    self._manager.close()
