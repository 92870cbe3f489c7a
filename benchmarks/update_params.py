"""Whether a change alters what the update computes: a few `debug` updates from fixed inputs.

  python -m benchmarks.update_params                      # compare with tests/golden/update_debug.json
  python -m benchmarks.update_params --write_golden       # a change of the update on purpose: rewrite it
  python -m benchmarks.update_params --out=/tmp/a.npz     # every parameter, to compare two checkouts
  python -m benchmarks.update_params --compare /tmp/a.npz /tmp/b.npz   # bit for bit (prints max |A - B|)

--set FIELD=VALUE (repeatable) overrides the debug config, e.g. --set model.decoder.impl=patches.
The fingerprint (moto_jax/testing.py) holds every metric of each update and the mean and mean |x|
of every parameter array; `tests/test_golden.py` checks it within a relative 1e-4. Rewriting the
golden file marks every learning record made before as stale (`python -m benchmarks.report`).
"""

import argparse
import json
import os
import sys

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--updates', type=int, default=3)
  parser.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='config override, e.g. --set model.decoder.impl=patches (repeatable)',
  )
  parser.add_argument('--write_golden', action='store_true', help='rewrite tests/golden/update_debug.json')
  parser.add_argument('--out', help='save every parameter array here (.npz) instead of comparing')
  parser.add_argument('--compare', nargs=2, metavar=('A', 'B'), help='two saved .npz files to compare')
  args = parser.parse_args()
  if args.compare:
    a, b = (np.load(path) for path in args.compare)
    if a.files != b.files or any(a[k].shape != b[k].shape for k in a.files):
      sys.exit(f'{args.compare[0]} and {args.compare[1]} hold different parameter layouts')
    print(
      f'max |A - B| over {len(a.files)} parameter arrays: '
      f'{max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files):.3g}'
    )
    return
  import jax

  jax.config.update('jax_disable_most_optimizations', True)  # as the tests compile
  from configs import metaworld
  from moto_jax import testing
  from moto_jax.training import config_check

  config = metaworld.get_config('drawer-open,debug').unlock()
  for item in args.set:
    config_check.override(config, item)
  if args.out:
    from jax.sharding import Mesh

    from moto_jax import agent

    mesh = Mesh(np.asarray(jax.devices()[:1]), ('data',))
    parts = agent.build(config, testing.ACTION_DIM)
    state = agent.create_train_state(parts, jax.random.key(0), mesh=mesh)
    update = agent.make_update_fn(parts, mesh=mesh)
    batch = agent.shard_batch(testing.synthetic_batch(0, 4, config.train.seq_len), mesh)
    for step in range(args.updates):
      state, _ = update(state, batch, jax.random.key(step))
    np.savez(args.out, *[np.asarray(x) for x in jax.tree.leaves(state.params)])
    print(f'{args.updates} updates: parameters saved to {args.out}')
    return
  got = testing.update_fingerprint(config, updates=args.updates)
  if args.write_golden:
    if args.set:
      sys.exit('--write_golden takes the debug config as it is (no --set)')
    os.makedirs(os.path.dirname(testing.GOLDEN), exist_ok=True)
    with open(testing.GOLDEN, 'w') as f:
      json.dump(got, f, indent=1, sort_keys=True)
      f.write('\n')
    print(f'Wrote {testing.GOLDEN} (hash {testing.golden_hash()}): learning records of other hashes are now stale')
    return
  with open(testing.GOLDEN) as f:
    expected = json.load(f)
  problems = testing.compare_fingerprints(expected, got)
  print(
    '\n'.join(problems)
    if problems
    else f'The update computes what {os.path.relpath(testing.GOLDEN)} holds (relative tolerance {testing.RTOL}).'
  )
  sys.exit(1 if problems else 0)


if __name__ == '__main__':
  main()
