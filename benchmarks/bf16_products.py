"""Matrix products in float32 and in bfloat16 (float32 accumulation) through XLA on this machine,
forward and both gradients, at the `paper` patch-form layers' shapes: why `model.compute_dtype`
arranges its backward products as it does (networks/precision.py).

  python benchmarks/bf16_products.py [--reps=5]

Per shape [M, K] @ [K, N], GFLOP/s of:
  f32 x@w / g@w.T / x.T@g        the float32 product and autodiff's two gradient products;
  bf16 x@w                       bfloat16 factors, float32 result (the factors cast beforehand);
  bf16 autodiff g@w.T / x.T@g    the same gradient products written plainly in bfloat16: XLA:CPU
                                 converts their factors back to float32 (a transposed operand);
  bf16 arranged dx / dw          precision.product_grads: g @ (w^T) and (g^T @ x)^T with the
                                 transposed factors materialised row-major, from bfloat16 x and w
                                 (the forward's residuals) and a float32 g (its cast included).
Then the same per shape summed, float32 against bfloat16 (arranged), as a ratio.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from moto_jax.networks import precision

BF16, F32 = jnp.bfloat16, jnp.float32
# (M, K, N) of the `paper` update's largest patch products per device (400 images): encoder conv1
# and conv2, decoder conv0 and conv1 (phase form); and a square reference.
SHAPES = [(400 * 14 * 14, 768, 96), (400 * 6 * 6, 1536, 192), (400 * 5 * 5, 1536, 768),
          (400 * 9 * 9, 768, 384), (2048, 2048, 2048)]


def seconds(f, *args, reps):
  jax.block_until_ready(f(*args))
  start = time.perf_counter()
  for _ in range(reps):
    jax.block_until_ready(f(*args))
  return (time.perf_counter() - start) / reps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=5)
  args = parser.parse_args()
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}, one XLA device using every core')
  cols = ['f32 x@w', 'f32 g@w.T', 'f32 x.T@g', 'bf16 x@w', 'bf16 autodiff g@w.T', 'bf16 autodiff x.T@g',
          'bf16 arranged dx', 'bf16 arranged dw']
  print('| M, K, N | ' + ' | '.join(cols) + ' | f32 / bf16 (all three) |')
  print('|---' * (len(cols) + 2) + '|')
  dot16 = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=F32))
  fns = [jax.jit(lambda x, w, g: x @ w), jax.jit(lambda x, w, g: g @ w.T), jax.jit(lambda x, w, g: x.T @ g),
         lambda x, w, g: dot16(x, w),
         jax.jit(lambda x, w, g: jnp.dot(g, w.T, preferred_element_type=F32)),
         jax.jit(lambda x, w, g: jnp.dot(x.T, g, preferred_element_type=F32)),
         jax.jit(lambda x, w, g: precision.product_grads(x, w, g, BF16)[0]),
         jax.jit(lambda x, w, g: precision.product_grads(x, w, g, BF16)[1])]
  for m, k, n in SHAPES:
    keys = jax.random.split(jax.random.key(0), 3)
    x, w, g = (jax.random.normal(kk, s) for kk, s in zip(keys, [(m, k), (k, n), (m, n)]))
    low = [a.astype(BF16) for a in (x, w, g)]
    times = []
    for i, f in enumerate(fns):
      operands = (x, w, g) if i < 3 else low if i < 6 else (low[0], low[1], g)
      times.append(seconds(f, *operands, reps=args.reps))
    flop = 2 * m * k * n
    ratio = sum(times[:3]) / (times[3] + times[6] + times[7])
    print(f'| {m}, {k}, {n} | ' + ' | '.join(f'{flop / t / 1e9:.0f}' for t in times) + f' | {ratio:.2f}x |',
          flush=True)


if __name__ == '__main__':
  main()
