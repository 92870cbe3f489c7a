"""Sums over the ensemble's member axis: XLA's reduction against the adds written out, side by side.

Times (jitted, one array on one XLA device, which uses every core) a sum over the leading axis of a
[M, N, G, C] array, then Eq. 2's disagreement and the member pick forward + backward, each in the
plain form (`jnp.sum` / `jnp.std` over axis 0, a one-hot sum) and as `moto_jax.networks.layers`
computes them (`sum_members`, hand-written gradients). Defaults: the `paper` preset's 7 prior heads
on one device's 400 imagination starts.

  python benchmarks/member_axis.py [--members=7 --rows=400 --groups=32 --classes=32] [--steps=20]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import process_setup  # noqa: E402
if __name__ == '__main__':
  process_setup.start()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from moto_jax import allocator  # noqa: E402
from moto_jax.networks import layers  # noqa: E402


def ms_per_call(fn, args, steps: int) -> float:
  compiled = jax.jit(fn).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  start = time.perf_counter()
  for _ in range(steps):
    out = compiled(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps * 1e3


def plain_disagreement(logits):
  return jnp.mean(jnp.std(jax.nn.log_softmax(logits, -1), axis=0), axis=(-2, -1))


def plain_pick(values, member):
  onehot = jnp.moveaxis(jax.nn.one_hot(member, values.shape[0]), -1, 0)[..., None, None]
  return jnp.sum(values * onehot, axis=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--members', type=int, default=7)
  parser.add_argument('--rows', type=int, default=400)
  parser.add_argument('--groups', type=int, default=32)
  parser.add_argument('--classes', type=int, default=32)
  parser.add_argument('--steps', type=int, default=20)
  args = parser.parse_args()
  shape = (args.members, args.rows, args.groups, args.classes)
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  logits = jax.device_put(layers.unimix_logits(jax.random.normal(k1, shape), 0.01), jax.devices()[0])
  member = jax.random.randint(k2, shape[1:2], 0, args.members)
  weight = jax.random.normal(k3, shape[1:])
  print(f'{allocator.status()}\njax {jax.__version__}, one {jax.devices()[0].platform} device; array {shape}')
  rows = [
      ('sum over members', lambda x: jnp.sum(x, 0), layers.sum_members, (logits,)),
      ('disagreement (Eq. 2), fwd + bwd', jax.grad(lambda x: jnp.sum(plain_disagreement(x))),
       jax.grad(lambda x: jnp.sum(layers.ensemble_disagreement(x))), (logits,)),
      ('member pick, fwd + bwd', jax.grad(lambda x, m: jnp.sum(plain_pick(x, m) * weight)),
       jax.grad(lambda x, m: jnp.sum(layers.select_member(x, m) * weight)), (logits, member)),
  ]
  print('| operation | plain ms | written out ms | plain / written out |\n|---|---|---|---|')
  for name, plain, written, fargs in rows:
    a, b = ms_per_call(plain, fargs, args.steps), ms_per_call(written, fargs, args.steps)
    print(f'| {name} | {a:.2f} | {b:.2f} | {a / b:.1f}x |', flush=True)


if __name__ == '__main__':
  main()
