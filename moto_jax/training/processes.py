"""The main job across processes (`launch.main --multihost`): what each process does alone, what
they exchange, and who writes.

With P processes (`jax.distributed`), each has its own environments and one global batch is
sharded over every device of every process (`agent.shard_batch`):
* an online unit collects one exploring episode per process; the episodes are exchanged
  (`gather_episodes`) so every process's episode store holds all of them, in the same order,
  and the replicated refits see the same data everywhere; each process saves the episodes it
  collected (global index `unit start + process index`);
* an evaluation splits its start seeds over the processes (`seeds[p::P]`) and the per-episode
  results are gathered, so the success rate counts every process's episodes; process 0 runs the
  diagnostics on its own devices and writes the metrics log, the plots and `summary.json`;
* the checkpoint is one orbax checkpoint written by all (orbax writes each replicated array
  once); its schedule and every stop request are decided together (`broadcast_flag`, `any_flag`),
  so no process waits in a collective that another has left.
The workdir must be on a file system every process sees (as orbax needs for the checkpoint).
With one process every function here is the identity or does nothing.
"""

from __future__ import annotations

import jax
import numpy as np


def count() -> int:
  return jax.process_count()


def index() -> int:
  return jax.process_index()


def is_main() -> bool:
  """Process 0: the one that writes the metrics log, plots, config and summary."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def any_flag(flag: bool) -> bool:
  """True on every process when it is true on any (a stop requested by a signal to one of them)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils

  return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


def broadcast_flag(flag: bool) -> bool:
  """Process 0's `flag` on every process (a decision that depends on its clock)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils

  return bool(multihost_utils.broadcast_one_to_all(np.int32(bool(flag))))


def gather_rows(values: np.ndarray) -> np.ndarray:
  """Every process's rows of `values` [n_p, ...] (n_p may differ), concatenated in process order."""
  values = np.asarray(values)
  if jax.process_count() == 1:
    return values
  from jax.experimental import multihost_utils

  counts = np.asarray(multihost_utils.process_allgather(np.int32(len(values))))
  padded = np.zeros((int(counts.max()),) + values.shape[1:], values.dtype)
  padded[: len(values)] = values
  gathered = np.asarray(multihost_utils.process_allgather(padded))
  return np.concatenate([gathered[p, : counts[p]] for p in range(len(counts))])


def gather_episodes(episode: dict) -> list[dict]:
  """Every process's `episode` (same keys; lengths may differ), in process order."""
  if jax.process_count() == 1:
    return [episode]
  from jax.experimental import multihost_utils

  lengths = np.asarray(multihost_utils.process_allgather(np.int32(len(episode['image']))))
  longest = int(lengths.max())
  padded = {}
  for k, v in episode.items():
    v = np.asarray(v)
    if v.ndim and len(v) == len(episode['image']):  # per-step arrays: padded to the longest episode
      v = np.concatenate([v, np.zeros((longest - len(v),) + v.shape[1:], v.dtype)])
    padded[k] = v
  gathered = jax.tree.map(np.asarray, multihost_utils.process_allgather(padded))
  out = []
  for p, n in enumerate(lengths):
    out.append(
      {
        k: (gathered[k][p, :n] if np.ndim(episode[k]) and len(episode[k]) == len(episode['image']) else gathered[k][p])
        for k in episode
      }
    )
  return out


def local_copy(tree):
  """A replicated global pytree as arrays on this process's first device: jitted functions of them
  (acting, diagnostics) then run on this process alone, not as a program every process must join."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def local_mesh():
  """A 1-D 'data' mesh over this process's devices (the diagnostics' batch is this process's)."""
  from jax.sharding import Mesh

  from moto_jax.xla_cpu.data_parallel import AXIS

  return Mesh(np.asarray(jax.local_devices()), (AXIS,))
