"""Cost of the end-of-offline refit (agent/refit.py) by where it runs, side by side in one run.

  python benchmarks/refit_speed.py [--preset=small] [--steps=50] [--episodes=10]

Placements: `one device` (an unreplicated state, as benchmarks/refit_eval.py had it), `replicated`
(the training loop's replicated state, jitted without a mesh: every device runs the whole refit, as
the loop did before the refit took its mesh) and `mesh` (the loop now: each step's windows split
over the devices). For each: compile seconds, seconds per refit step (each `agent.actor_steps`
actor-critic steps), and the ratio to `one device`. Synthetic episodes (the cost does not depend on
the pixels). Splits the CPU into one XLA device per core as launch.main does.
"""
import os
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository root
from moto_jax import cpu_devices  # noqa: E402
cpu_devices.split()
import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import metaworld  # noqa: E402
from moto_jax import agent  # noqa: E402
from moto_jax.agent import refit as refit_lib  # noqa: E402

ACTION_DIM = 4


def episodes(n: int, length: int, size: int) -> list[dict]:
  rng = np.random.default_rng(0)
  out = []
  for _ in range(n):
    is_first = np.zeros(length, bool)
    is_first[0] = True
    out.append({'image': rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
                'action': rng.uniform(-1, 1, (length, ACTION_DIM)).astype(np.float32),
                'reward': rng.uniform(0, 1, length).astype(np.float32),
                'discount': np.ones(length, np.float32), 'is_first': is_first, 'bc_weight': 1.0})
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='small')
  parser.add_argument('--steps', type=int, default=50, help='refit steps timed per placement')
  parser.add_argument('--episodes', type=int, default=10)
  parser.add_argument('--placements', default='one device,replicated,mesh')
  args = parser.parse_args()
  config = metaworld.get_config(f'drawer-open,{args.preset}')
  config.train.refit_steps = args.steps
  size = config.env.image_size
  length = config.env.episode_length // config.env.action_repeat + 1
  arrays = refit_lib.episode_arrays(episodes(args.episodes, length, size))
  mesh = agent.default_mesh()
  parts = agent.build(config, ACTION_DIM)
  state = agent.create_train_state(parts, jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(1)
  print(f'preset {args.preset}: batch {config.train.batch_size}x{config.train.seq_len}, '
        f'actor_steps {config.agent.actor_steps}, {args.steps} refit steps, {args.episodes} episodes of '
        f'{length} steps, {jax.device_count()} devices, {os.cpu_count()} cores', flush=True)
  rows = []
  for placement in args.placements.split(','):
    if placement == 'one device':
      fn, s, a = refit_lib.make_refit_fn(parts), state, arrays
    elif placement == 'replicated':
      fn = refit_lib.make_refit_fn(parts)
      s, a = agent.replicate(state, mesh), agent.replicate(arrays, mesh)
    elif placement == 'mesh':
      fn, s, a = refit_lib.make_refit_fn(parts, mesh), state, arrays
    else:
      raise SystemExit(f'--placements: unknown placement {placement!r} (one device, replicated, mesh)')
    t = time.perf_counter()
    compiled = fn.lower(s, a, key).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(compiled(s, a, key))
    per_step = (time.perf_counter() - t) / args.steps
    rows.append((placement, compile_s, per_step))
    print(f'  {placement:<11} compile {compile_s:6.1f} s   {per_step:6.3f} s/refit step', flush=True)
  base = rows[0][2]
  print(f'\n{"placement":<11} {"compile s":>9} {"s/step":>7} {"x " + rows[0][0]:>14} {"500 steps":>10}')
  for placement, compile_s, per_step in rows:
    print(f'{placement:<11} {compile_s:9.1f} {per_step:7.3f} {per_step / base:14.2f} {500 * per_step / 60:8.1f} min')


if __name__ == '__main__':
  main()
