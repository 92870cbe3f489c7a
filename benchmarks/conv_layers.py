"""Each encoder and decoder convolution of a preset, forward + backward, in every implementation.

For every layer (at the preset's B x T images, batch sharded over the default mesh the way the
update runs it): milliseconds per forward + backward (gradients of the input and the kernel), XLA's
FLOP count, the GFLOP/s achieved, and its share of the matmul roofline measured in the same run.
'xla' is `lax.conv_general_dilated` / `lax.conv_transpose`; 'phases' the stride-1 form of the
stride-2 convolutions (conv_forms.conv_stride2_phases, conv_forms.conv_transpose_phases); 'patches' the patch
matrix product (conv_forms.conv_patches; the transposed layers' phases as matrix products in the form
the model uses, 'direct', and 'patches:<form>' each form conv_forms.conv_transpose_phases offers, for
the transposed layers only: use with --layers=decoder); 'phases+patches' the stride-2 layers'
phases as patches. All compute the same function.

  python benchmarks/conv_layers.py --preset=paper [--steps=5] [--impls=xla,phases,patches]
      [--decoder=transpose]   # decoder kind (default: the preset's)
      [--layers=encoder]      # only the layers whose name starts with this
      [--dtype=bfloat16]      # the products' precision (model.compute_dtype)
"""
import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import process_setup  # noqa: E402
if __name__ == '__main__':
  process_setup.start()

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from benchmarks.train_step import flops_of, roofline_gflops, roofline_size  # noqa: E402
from configs import metaworld  # noqa: E402
from moto_jax import agent  # noqa: E402
from moto_jax import allocator  # noqa: E402
from moto_jax.networks import conv_forms  # noqa: E402
from moto_jax.networks import precision  # noqa: E402


def layer_fns(kind: str, stride: int, padding: str, dtype=jnp.float32):
  """{impl: f(x, kernel) -> y} for one layer; kind 'conv' or 'transpose'; dtype: the products'
  precision (networks/precision.py; XLA's convolutions: their factors rounded)."""
  if kind == 'transpose':
    fns = {'xla': lambda x, w: precision.rounded(conv_forms.xla_conv_transpose, x, w, dtype),
           'phases': lambda x, w: conv_forms.conv_transpose_phases(x, w, dtype=dtype),
           'patches': lambda x, w: conv_forms.conv_transpose_phases(x, w, patches=True, dtype=dtype)}
    for form in conv_forms.TRANSPOSE_FORMS:   # every form conv_transpose_phases offers
      fns[f'patches:{form}'] = functools.partial(conv_forms.conv_transpose_phases, patches=True, dtype=dtype, form=form)
    return fns
  fns = {'xla': lambda x, w: conv_forms.conv_xla(x, w, padding, (stride, stride), dtype),
         'patches': lambda x, w: conv_forms.conv_patches(x, w, stride, padding, dtype)}
  if stride == 2 and padding == 'VALID':
    fns['phases'] = lambda x, w: conv_forms.conv_stride2_phases(x, w, dtype=dtype)
    fns['phases+patches'] = lambda x, w: conv_forms.conv_stride2_phases(x, w, patches=True, dtype=dtype)
  return fns


def layers_of(config) -> list[tuple[str, str, tuple, tuple, int, str]]:
  """(name, kind, input shape HWC, kernel shape, stride, padding) of every conv layer."""
  enc, dec = config.model.encoder, config.model.decoder
  out, size, cin = [], config.env.image_size, 3
  for i in range(enc.layers):
    cout = enc.depth * 2 ** i
    out.append((f'encoder conv{i}', 'conv', (size, size, cin), (enc.kernel, enc.kernel, cin, cout), 2, 'VALID'))
    size, cin = (size - enc.kernel) // 2 + 1, cout
  size, cin = config.env.image_size // 2 ** dec.layers, dec.depth * 2 ** (dec.layers - 1)
  for i in range(dec.layers):
    cout = 3 if i == dec.layers - 1 else dec.depth * 2 ** (dec.layers - 2 - i)
    if dec.kind == 'transpose':
      out.append((f'decoder conv{i}', 'transpose', (size, size, cin), (dec.kernel, dec.kernel, cin, cout), 2, 'SAME'))
    else:
      k = dec.subpixel_kernel
      out.append((f'decoder conv{i}', 'conv', (size, size, cin), (k, k, cin, 4 * cout), 1, 'SAME'))
    size, cin = 2 * size, cout
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='paper')
  parser.add_argument('--decoder', default='', help="decoder kind ('transpose' | 'subpixel'; default: the preset's)")
  parser.add_argument('--impls', default='xla,phases,patches,phases+patches')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--layers', default='', help="only layers whose name starts with this, e.g. 'encoder'")
  parser.add_argument('--dtype', default='float32', help="the products' precision: 'float32' | 'bfloat16'")
  args = parser.parse_args()
  config = metaworld.get_config(f'drawer-open,{args.preset}').unlock()
  if args.decoder:
    config.model.decoder.kind = args.decoder
  n = config.train.batch_size * config.train.seq_len
  mesh = agent.default_mesh()
  data = NamedSharding(mesh, P('data'))
  print(allocator.status())
  print(f'jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device(s); preset {args.preset}, '
        f'{n} images, decoder {config.model.decoder.kind}, products in {args.dtype}', flush=True)
  rows = []
  for name, kind, shape, kshape, stride, padding in layers_of(config):
    if not name.startswith(args.layers):
      continue
    x = jax.device_put(jax.random.normal(jax.random.key(0), (n,) + shape), data)
    w = jax.random.normal(jax.random.key(1), kshape) * 0.05
    for impl, f in layer_fns(kind, stride, padding, precision.resolve(args.dtype)).items():
      if impl not in args.impls.split(','):
        continue
      grad = jax.jit(jax.grad(lambda a, b: jnp.sum(f(a, b) ** 2), argnums=(0, 1)))
      compiled = grad.lower(x, w).compile()
      jax.block_until_ready(compiled(x, w))
      start = time.perf_counter()
      for _ in range(args.steps):
        out = compiled(x, w)
      jax.block_until_ready(out)
      s = (time.perf_counter() - start) / args.steps
      g = flops_of(compiled) / 1e9
      rows.append((name, kind, shape, kshape, impl, s, g))
      print(f'{name:15s} {str(shape):14s} -> {kshape[-1]:4d} {impl:22s} {s * 1e3:8.1f} ms {g:7.2f} GFLOP '
            f'{g / s:6.1f} GFLOP/s', flush=True)
  roof = roofline_gflops(roofline_size())
  print(f'\nroofline (same run): jitted {roofline_size()}^2 f32 matmul: {roof:.1f} GFLOP/s')
  print('| layer | input | kernel | impl | ms (fwd + bwd) | GFLOP | GFLOP/s | of roofline | x fastest |')
  print('|---|---|---|---|---|---|---|---|---|')
  best = {}
  for r in rows:
    best[r[0]] = min(best.get(r[0], r[5]), r[5])
  for name, kind, shape, kshape, impl, s, g in rows:
    print(f"| {name} | {'x'.join(map(str, shape))} | {'x'.join(map(str, kshape))} | {impl} | {s * 1e3:.1f} | "
          f'{g:.2f} | {g / s:.1f} | {g / s / roof:.0%} | {s / best[name]:.2f} |')
  for impl in args.impls.split(','):
    total = sum(r[5] for r in rows if r[4] == impl)
    print(f'sum over layers, {impl}: {total * 1e3:.0f} ms' if all(any(r[0] == l and r[4] == impl for r in rows)
                                                                  for l in best) else f'{impl}: not every layer')
  print(f'sum over layers, fastest of each: {sum(best.values()) * 1e3:.0f} ms')


if __name__ == '__main__':
  main()
