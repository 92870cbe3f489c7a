"""Scans run per device on their own rows, when a function is traced under a data-parallel mesh.

Under `jax.jit` with the batch sharded (GSPMD), a scan whose body applies replicated parameters to
sharded rows gets its parameter gradient all-reduced at every step of the scan's backward pass:
XLA does not move the all-reduce out of the loop. Every step then waits for the other devices.
On a 2-core CPU at the `small` preset those waits were a quarter of the update's op time
(per-op traces of the update). `rows_per_device` runs such a function under `jax.shard_map`:
each device scans its own rows, and the parameters' gradients are summed once, where the
function's inputs enter.

The function must treat rows independently (no sums over rows inside), and any random numbers
must be drawn outside it for all rows, so that the result is the same on any number of devices.
"""

from typing import Callable, Sequence

import jax
from jax.sharding import PartitionSpec as P

AXIS = 'data'  # the mesh axis of the batch (`moto_jax.agent.sharding`)


def _spec(axis: int | None) -> P:
  return P() if axis is None else P(*([None] * axis), AXIS)


def rows_per_device(fn: Callable, in_axes: Sequence[int | None], out_axes) -> Callable:
  """`fn(*args)`, run per device on its rows when traced under a mesh with axis 'data' of size > 1
  (`jax.sharding.use_abstract_mesh`, as the update steps do) and every row axis divides evenly;
  else `fn` itself.

  in_axes: per argument, the row axis of all its arrays, or None (replicated: parameters).
  out_axes: the row axis of every output array, or a pytree prefix of the outputs giving it.
  """

  def wrapped(*args):
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or AXIS not in mesh.axis_names or mesh.shape[AXIS] == 1:
      return fn(*args)
    n = mesh.shape[AXIS]
    for arg, axis in zip(args, in_axes, strict=True):
      if axis is not None and any(x.shape[axis] % n for x in jax.tree.leaves(arg)):
        return fn(*args)
    in_specs = tuple(_spec(axis) for axis in in_axes)
    out_specs = jax.tree.map(_spec, out_axes)

    def per_device(*local):
      # Replicated inputs made device-varying once, here: the transpose of that cast (a sum of
      # the gradients over devices) then happens once, not at every use inside a scan's body.
      local = [arg if axis is not None else jax.lax.pcast(arg, AXIS, to='varying') for arg, axis in zip(local, in_axes)]
      return fn(*local)

    return jax.shard_map(per_device, mesh=mesh, in_specs=in_specs, out_specs=out_specs)(*args)

  return wrapped
