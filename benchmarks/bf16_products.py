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
  lowp = lambda a, b: jnp.dot(a, b, preferred_element_type=F32)
  # (column, product, operands): 'f32' float32 x, w, g; 'low' all three bfloat16; 'res' bfloat16 x
  # and w (the forward's residuals) with the float32 gradient, as the update's backward pass has.
  columns = [('f32 x@w', lambda x, w, g: x @ w, 'f32'), ('f32 g@w.T', lambda x, w, g: g @ w.T, 'f32'),
             ('f32 x.T@g', lambda x, w, g: x.T @ g, 'f32'), ('bf16 x@w', lambda x, w, g: lowp(x, w), 'low'),
             ('bf16 autodiff g@w.T', lambda x, w, g: lowp(g, w.T), 'low'),
             ('bf16 autodiff x.T@g', lambda x, w, g: lowp(x.T, g), 'low'),
             ('bf16 arranged dx', lambda x, w, g: precision.product_grads(x, w, g, BF16)[0], 'res'),
             ('bf16 arranged dw', lambda x, w, g: precision.product_grads(x, w, g, BF16)[1], 'res')]
  print('| M, K, N | ' + ' | '.join(c[0] for c in columns) + ' | f32 / bf16 (all three) |')
  print('|---' * (len(columns) + 2) + '|')
  for m, k, n in SHAPES:
    keys = jax.random.split(jax.random.key(0), 3)
    x, w, g = (jax.random.normal(kk, s) for kk, s in zip(keys, [(m, k), (k, n), (m, n)]))
    xl, wl, gl = (a.astype(BF16) for a in (x, w, g))
    operands = {'f32': (x, w, g), 'low': (xl, wl, gl), 'res': (xl, wl, g)}
    times = {name: seconds(jax.jit(f), *operands[which], reps=args.reps) for name, f, which in columns}
    flop = 2 * m * k * n
    ratio = (sum(times[c] for c in ('f32 x@w', 'f32 g@w.T', 'f32 x.T@g'))
             / sum(times[c] for c in ('bf16 x@w', 'bf16 arranged dx', 'bf16 arranged dw')))
    print(f'| {m}, {k}, {n} | ' + ' | '.join(f'{flop / t / 1e9:.0f}' for t in times.values())
          + f' | {ratio:.2f}x |', flush=True)

if __name__ == '__main__':
  main()
