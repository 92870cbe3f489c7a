r"""Per-frame cost of step + render for a 64x64 frame: MetaWorld's fast renderer vs `env.render()`,
or (`--domain=kitchen`) Franka Kitchen with its meshes as shipped vs decimated (`env.mesh_faces`).

  MUJOCO_GL=egl python -m benchmarks.env_throughput [--task drawer-open] [--frames 200] [--rounds 3]
  MUJOCO_GL=egl python -m benchmarks.env_throughput --domain=kitchen [--mesh_faces=1000]

Each measurement runs in its own fresh process (two MuJoCo GL contexts in one process
disturb each other's timings), and the paths alternate round by round so machine
noise hits them alike. A frame is one simulator step plus one render at 64x64 from
the `corner` camera; the wrapper's agent step is `action_repeat` (2) simulator steps
plus one render.
"""

import argparse
import multiprocessing as mp
import os
import time

os.environ.setdefault('MUJOCO_GL', 'egl')


def measure(kind: str, task: str, frames: int) -> float:
  """Seconds per frame for `kind` in {'shipped', 'fast', 'physics', 'agent_step'}."""
  import warnings

  warnings.filterwarnings('ignore')
  import numpy as np

  rng = np.random.default_rng(0)
  if kind == 'shipped':
    import gymnasium as gym
    import metaworld

    gym.register_envs(metaworld)
    wrapped = gym.make(
      'Meta-World/MT1',
      env_name=f'{task}-v3',
      seed=0,
      render_mode='rgb_array',
      camera_name='corner',
      width=64,
      height=64,
    )
    wrapped.reset()
    sim, render = wrapped.unwrapped, wrapped.unwrapped.render
    closer = wrapped.close
  else:
    from moto_jax.suites.metaworld.env import MetaWorldEnv

    env = MetaWorldEnv(task, seed=0, camera='authors' if kind == 'fast_authors' else 'corner')
    env.reset(seed=0)
    sim, render, closer = env._env, env.render, env.close  # pylint: disable=protected-access
    if kind == 'physics':
      render = lambda: None
  assert kind == 'physics' or render().shape == (64, 64, 3)
  for _ in range(20):  # warm-up: llvmpipe compiles its shaders on first use
    render()
  actions = rng.uniform(-1, 1, (frames, 4)).astype(np.float32)
  if kind == 'agent_step':
    t0 = time.perf_counter()
    for a in actions:
      *_, trunc, _ = env.step(a)
      if trunc:
        env.reset()
    dt = time.perf_counter() - t0
  else:
    t0 = time.perf_counter()
    for a in actions:
      if sim.curr_path_length >= sim.max_path_length - 1:
        sim.reset()
      sim.step(a)
      render()
    dt = time.perf_counter() - t0
  closer()
  return dt / frames


def measure_kitchen(kind: str, mesh_faces: int, frames: int) -> float:
  """Seconds per agent step (one simulator step of 40 physics steps, one render) of `KitchenEnv`:
  kind 'meshes_shipped', 'meshes_decimated' (at `mesh_faces`) or 'physics' (no render)."""
  import numpy as np

  from moto_jax.suites.kitchen.env import KitchenEnv

  env = KitchenEnv('mixed', seed=0, mesh_faces=mesh_faces if kind == 'meshes_decimated' else 0)
  env.reset(seed=0)
  if kind == 'physics':
    env._obs = lambda: {}  # pylint: disable=protected-access
  for _ in range(20):  # warm-up: llvmpipe compiles its shaders on first use
    env.render()
  actions = np.random.default_rng(0).uniform(-1, 1, (frames, 9))
  t0 = time.perf_counter()
  for a in actions:
    *_, trunc, _ = env.step(a)
    if trunc:
      env.reset()
  dt = time.perf_counter() - t0
  env.close()
  return dt / frames


def kitchen(args) -> None:
  kinds = ('meshes_shipped', 'meshes_decimated', 'physics')
  results = {k: [] for k in kinds}
  with mp.get_context('spawn').Pool(1, maxtasksperchild=1) as pool:
    for _ in range(args.rounds):
      for k in kinds:
        results[k].append(pool.apply(measure_kitchen, (k, args.mesh_faces, args.frames)))
  import numpy as np

  med = {k: float(np.median(v)) * 1e3 for k, v in results.items()}
  print(f'Franka Kitchen mixed, 64x64; median of {args.rounds} rounds, ms per agent step (step + render):')
  print(f'  meshes as shipped                  : {med["meshes_shipped"]:7.2f} ms')
  print(f'  meshes decimated to {args.mesh_faces:>5} faces   : {med["meshes_decimated"]:7.2f} ms')
  print(f'  physics step only                  : {med["physics"]:7.2f} ms')
  shipped, lite, phys = med['meshes_shipped'], med['meshes_decimated'], med['physics']
  print(
    f'  speed-up of a step {shipped / lite:.2f}x; of the rendering {(shipped - phys) / max(lite - phys, 1e-9):.2f}x'
  )


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--domain', default='metaworld', choices=('metaworld', 'kitchen'))
  parser.add_argument('--task', default='drawer-open')
  parser.add_argument('--frames', type=int, default=200)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--mesh_faces', type=int, default=1000, help="kitchen: the decimated meshes' face budget")
  args = parser.parse_args()
  if args.domain == 'kitchen':
    kitchen(args)
    return
  kinds = ('shipped', 'fast', 'fast_authors', 'physics', 'agent_step')
  results = {k: [] for k in kinds}
  ctx = mp.get_context('spawn')
  with ctx.Pool(1, maxtasksperchild=1) as pool:
    for _ in range(args.rounds):
      for k in kinds:
        frames = args.frames // 4 if k == 'shipped' else args.frames
        results[k].append(pool.apply(measure, (k, args.task, frames)))
  import numpy as np

  med = {k: float(np.median(v)) * 1e3 for k, v in results.items()}
  print(f'MetaWorld {args.task}, camera=corner, 64x64; median of {args.rounds} rounds, ms per frame (step + render):')
  print(f'  env.render() as shipped : {med["shipped"]:7.2f} ms')
  print(f'  fast renderer           : {med["fast"]:7.2f} ms')
  print(f"  fast, authors' camera   : {med['fast_authors']:7.2f} ms  (the default camera)")
  print(f'  physics step only       : {med["physics"]:7.2f} ms')
  print(f'  speed-up (shipped/fast) : {med["shipped"] / med["fast"]:7.1f}x')
  print(
    f'  wrapper agent step (action repeat 2 + fast render): {med["agent_step"]:.2f} ms '
    f'= {1e3 / med["agent_step"]:.0f} agent steps/s'
  )


if __name__ == '__main__':
  main()
