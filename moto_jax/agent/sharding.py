"""Data parallelism: a 1-D mesh 'data' over every device of every process; the batch's axis 0 is
sharded over it, the train state replicated (XLA inserts the gradient all-reduce)."""

import functools

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from moto_jax.xla_cpu.data_parallel import AXIS


def default_mesh() -> Mesh:
  """A 1-D mesh 'data' over every device of every process."""
  return Mesh(np.asarray(jax.devices()), (AXIS,))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Builds the global batch from this process's rows, sharded over 'data' on axis 0."""
  sharding = NamedSharding(mesh, P(AXIS))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
  """Places a pytree (e.g. the TrainState) replicated on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def under_mesh(fn, mesh: Mesh):
  """`fn` traced under `mesh`, so that the scans in it run per device on their rows and sum their
  parameters' gradients once (`moto_jax.xla_cpu.data_parallel`). Wrap it before `jax.jit`."""

  @functools.wraps(fn)
  def traced(*args):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args)

  return traced
