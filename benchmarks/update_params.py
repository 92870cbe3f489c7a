"""Whether a change alters what the update computes: parameters after a few `debug` updates,
saved at one checkout and compared with another's (or with another device count).

  python benchmarks/update_params.py --out=/tmp/a.npz [--devices=1] [--updates=3]   # at checkout A
  python benchmarks/update_params.py --out=/tmp/b.npz [--devices=1]                 # at checkout B
  python benchmarks/update_params.py --compare /tmp/a.npz /tmp/b.npz

--set FIELD=VALUE (repeatable) overrides the debug config when saving, e.g.
--set model.decoder.impl=patches --set model.compute_dtype=bfloat16.

The batch is the tests' synthetic one (4 rows), the mesh spans `--devices` CPU devices. The
comparison prints the largest absolute difference over all parameters (0.0: bit for bit).
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', help='save the parameters here (.npz)')
  parser.add_argument('--devices', type=int, default=1)
  parser.add_argument('--updates', type=int, default=3)
  parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                      help='config override, e.g. --set model.decoder.impl=patches (repeatable)')
  parser.add_argument('--compare', nargs=2, metavar=('A', 'B'), help='two saved files to compare')
  args = parser.parse_args()
  if args.compare:
    a, b = (np.load(path) for path in args.compare)
    if a.files != b.files or any(a[k].shape != b[k].shape for k in a.files):
      sys.exit(f'{args.compare[0]} and {args.compare[1]} hold different parameter layouts')
    print(f'max |A - B| over {len(a.files)} parameter arrays: '
          f'{max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files):.3g}')
    return
  if not args.out:
    parser.error('give --out (to save) or --compare A B')
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.devices}"
  sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]
  import jax
  from jax.sharding import Mesh
  from conftest import ACTION_DIM, debug_config, synthetic_batch
  from moto_jax import agent
  from moto_jax.training import config_check
  config = debug_config()
  for item in args.set:
    config_check.override(config, item)
  mesh = Mesh(np.asarray(jax.devices()[:args.devices]), ('data',))
  parts = agent.build(config, ACTION_DIM)
  state = agent.create_train_state(parts, jax.random.key(0), mesh=mesh)
  update = agent.make_update_fn(parts, mesh=mesh)
  batch = agent.shard_batch(synthetic_batch(0, 4, config.train.seq_len), mesh)
  for step in range(args.updates):
    state, metrics = update(state, batch, jax.random.key(step))
  np.savez(args.out, *[np.asarray(x) for x in jax.tree.leaves(state.params)])
  print(f'{args.updates} updates on {args.devices} device(s): wm/loss {float(metrics["wm/loss"]):.6g}; '
        f'parameters saved to {args.out}')


if __name__ == '__main__':
  main()
