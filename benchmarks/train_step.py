"""Cost of the jitted training steps on this machine, per preset and decoder kind.

For each (preset, decoder kind): compile time, steady-state seconds per world-model update
(at the preset's batch and at 16 x 32) and per full update (preset's batch), updates/s, XLA's
FLOP count of the compiled step and the GFLOP/s achieved, and memory (XLA's buffer analysis of
the compiled step, per device; the process's peak RSS at the end), the CPU cores the process actually got
while timing (less than the core count when other jobs share the machine), the achieved rate as a share of
the machine's matmul roofline measured in the same run, the host side per update (sampling a batch
and placing it on the devices), and the kernel time and page faults per update (the allocator's
cost: moto_jax/xla_cpu/allocator.py). Then the subpixel / transpose, patches / xla and bfloat16 / float32 ratios.

  python -m benchmarks.train_step --presets=paper,small --steps=5 [--kinds=subpixel,preset] [--jobs=wm,full]
      [--impls=xla,preset]     # conv implementations to compare (model.encoder/decoder.impl;
                               # default: the preset's own)
      [--batches=16x32,8x32]   # batch shapes (default: the preset's)
      [--set agent.actor_steps=4]   # any config field
      [--dtypes=float32,bfloat16]   # model.compute_dtype values to compare (default: the preset's)

On a CPU it splits the machine into one XLA device per core, as the main job does, and the
default mesh splits the batch over them (data parallelism); XLA_FLAGS=
--xla_force_host_platform_device_count=N sets another count (1: one device using every core).
"""

if __name__ == '__main__':
  from benchmarks import process_setup as _setup

  _setup.start()  # the allocator; one XLA device per core unless XLA_FLAGS sets it
import argparse
import os
import resource
import sys
import time

import jax
import numpy as np

from configs import metaworld
from moto_jax import agent
from moto_jax.networks import conv
from moto_jax.training import config_check
from moto_jax.xla_cpu import allocator

ACTION_DIM = 4


def make_batch(batch: int, length: int) -> dict:
  rng = np.random.default_rng(0)
  is_first = np.zeros((batch, length), bool)
  is_first[:, 0] = True
  return {
    'image': rng.integers(0, 256, (batch, length, 64, 64, 3), dtype=np.uint8),
    'action': rng.uniform(-1, 1, (batch, length, ACTION_DIM)).astype(np.float32),
    'reward': rng.normal(size=(batch, length)).astype(np.float32),
    'discount': np.ones((batch, length), np.float32),
    'is_first': is_first,
    'is_terminal': np.zeros((batch, length), bool),
    'bc_weight': np.ones((batch, length), np.float32),
  }


def flops_of(compiled) -> float:
  """FLOPs of one step over all devices (XLA reports those of one SPMD partition)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', float('nan'))) * jax.device_count()


def memory_of(compiled) -> float:
  """Bytes XLA allocates per device for the step: arguments + outputs + temporaries - aliased."""
  m = compiled.memory_analysis()
  if m is None:
    return float('nan')
  return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def roofline_size() -> int:
  """Side of the roofline matmul: 2048 on a CPU, 8192 on an accelerator (where 2048 is too short to time)."""
  return 2048 if jax.devices()[0].platform == 'cpu' else 8192


def roofline_gflops(n: int, reps: int = 10) -> float:
  """GFLOP/s of a jitted n x n f32 matmul on the first device (XLA's intra-op threads: all cores)."""
  import jax.numpy as jnp

  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  start = time.perf_counter()
  for _ in range(reps):
    f(x).block_until_ready()
  return 2 * n**3 / ((time.perf_counter() - start) / reps) / 1e9


def host_seconds(config, batch: int, length: int, steps: int = 20) -> float:
  """Seconds per update outside the jitted step: sampling a batch from a store of 10 x 200-step
  episodes and placing it, sharded, on the devices."""
  from moto_jax.data.store import EpisodeStore

  rng = np.random.default_rng(0)
  store = EpisodeStore(length, online_fraction=config.train.online_fraction, cover_edges=config.train.cover_edges)
  for _ in range(10):
    n = 201
    store.add(
      {
        'image': rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        'action': rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
        'reward': rng.normal(size=n).astype(np.float32),
        'discount': np.ones(n, np.float32),
        'is_first': np.arange(n) == 0,
        'is_terminal': np.zeros(n, bool),
        'success': np.array(True),
        'bc_weight': np.float32(1.0),
      },
      part='offline',
    )
  mesh = agent.default_mesh()
  start = time.perf_counter()
  for _ in range(steps):
    out = agent.shard_batch(store.sample(batch, rng), mesh)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def device_peak_mb() -> float:
  """Peak bytes the first device's allocator has held so far (accelerators; NaN where not reported)."""
  stats = jax.devices()[0].memory_stats() or {}  # None on a CPU
  return stats.get('peak_bytes_in_use', float('nan')) / 2**20


def measure(make_fn, config, batch_shape, steps: int) -> dict:
  parts = agent.build(config, ACTION_DIM)
  state = agent.create_train_state(parts, jax.random.key(0))
  batch = make_batch(*batch_shape)
  rng = jax.random.key(1)
  start = time.perf_counter()
  compiled = make_fn(parts).lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - start
  state, metrics = compiled(state, batch, rng)  # warm-up
  jax.block_until_ready(metrics)
  start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
  for i in range(steps):
    state, metrics = compiled(state, batch, jax.random.key(i))
  jax.block_until_ready(metrics)
  wall = time.perf_counter() - start
  end = resource.getrusage(resource.RUSAGE_SELF)
  step_s = wall / steps
  kernel_s = (end.ru_stime - usage.ru_stime) / steps  # mapping and zeroing fresh memory, mostly
  cores = (end.ru_utime + end.ru_stime - usage.ru_utime - usage.ru_stime) / wall  # < devices when shared
  faults = (end.ru_minflt - usage.ru_minflt) / steps
  flops = flops_of(compiled)
  return {
    'compile_s': compile_s,
    'step_s': step_s,
    'updates_per_s': 1.0 / step_s,
    'gflop': flops / 1e9,
    'gflops_per_s': flops / 1e9 / step_s,
    'xla_mem_mb': memory_of(compiled) / 2**20,
    'params': agent.param_count(state)['total'],
    'cores': cores,
    'peak_mb': device_peak_mb(),
    'kernel_s': kernel_s,
    'faults': faults,
  }


KEYS = ('preset', 'kind', 'impl', 'dtype', 'step', 'batch')


def print_ratios(rows: list, title: str, field: str, base: str, extra) -> None:
  """Each row against the row that differs only in `field`, set to `base`: step-time ratio,
  updates/s of both, then `extra(row, base_row)`."""
  print(f'\n{title} (step time):')
  index = {tuple(r[k] for k in KEYS): r for r in rows}
  for r in rows:
    other = index.get(tuple(base if k == field else r[k] for k in KEYS))
    if r[field] != base and other:
      print(
        f'  {"  ".join(str(r[k]) for k in KEYS)}  time x{r["step_s"] / other["step_s"]:.2f} '
        f'({1 / r["step_s"]:.3f} against {1 / other["step_s"]:.3f} updates/s)  {extra(r, other)}'
      )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--presets', default='paper,small')
  parser.add_argument(
    '--kinds', default='preset', help="decoder kinds: subset of transpose, subpixel, preset (the preset's own)"
  )
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--jobs', default='wm,wm16x32,full', help='subset of wm, wm16x32, full')
  parser.add_argument(
    '--impls', default='preset', help="conv implementations: subset of xla, patches, phases, preset (the preset's own)"
  )
  parser.add_argument(
    '--batches', default='', help="BxT shapes for the wm and full jobs, e.g. 16x32,8x32 (default: the preset's batch)"
  )
  parser.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='config override, e.g. --set agent.actor_steps=4 (repeatable)',
  )
  parser.add_argument(
    '--dtypes',
    default='preset',
    help="model.compute_dtype values: subset of float32, bfloat16, preset (the preset's own)",
  )
  parser.add_argument(
    '--record',
    default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'results', 'speed.jsonl'),
    help='JSON-lines file for the presets\' own rows ("" = none); a dirty tree is not recorded',
  )
  args = parser.parse_args()
  print(
    f'jax {jax.__version__} on {jax.devices()[0].device_kind} x {jax.device_count()}; {allocator.status()}', flush=True
  )
  rows = []
  for preset in args.presets.split(','):
    for kind, impl, dtype in (
      (k, i, d) for k in args.kinds.split(',') for i in args.impls.split(',') for d in args.dtypes.split(',')
    ):
      config = metaworld.get_config(f'drawer-open,{preset}').unlock()
      # The preset's own settings (recorded in results/ when nothing else is changed).
      k0, i0, d0 = config.model.decoder.kind, conv.resolve_impl(config.model.encoder.impl), config.model.compute_dtype
      if conv.resolve_impl(config.model.decoder.impl) != i0:
        i0 = f'{i0}/{conv.resolve_impl(config.model.decoder.impl)}'
      if dtype != 'preset':
        config.model.compute_dtype = dtype
      if kind != 'preset':
        config.model.decoder.kind = kind
      if impl != 'preset':
        config.model.encoder.impl = config.model.decoder.impl = impl
      for item in args.set:  # before the labels below, which name what runs
        config_check.override(config, item)
      kind, impl = config.model.decoder.kind, conv.resolve_impl(config.model.encoder.impl)
      if conv.resolve_impl(config.model.decoder.impl) != impl:
        impl = f'{impl}/{conv.resolve_impl(config.model.decoder.impl)}'
      dtype = config.model.compute_dtype
      shapes = (
        [tuple(int(x) for x in s.split('x')) for s in args.batches.split(',')]
        if args.batches
        else [(config.train.batch_size, config.train.seq_len)]
      )
      jobs = []
      for j in args.jobs.split(','):
        if j == 'wm16x32' and (16, 32) not in shapes:
          jobs.append(('wm', agent.make_world_model_update_fn, (16, 32)))
        elif j in ('wm', 'full'):
          make = agent.make_world_model_update_fn if j == 'wm' else agent.make_update_fn
          jobs += [(j, make, shape) for shape in shapes]
      for step, make_fn, shape in jobs:
        config.train.batch_size, config.train.seq_len = shape
        r = measure(make_fn, config, shape, args.steps)
        r.update(
          preset=preset,
          kind=kind,
          impl=impl,
          dtype=dtype,
          step=step,
          batch=f'{shape[0]}x{shape[1]}',
          host_s=host_seconds(config, *shape),
          default=(not args.set and (kind, impl, dtype) == (k0, i0, d0) and not args.batches),
        )
        rows.append(r)
        print(
          f'{preset:6s} {kind:9s} {impl:7s} {dtype:8s} {step:4s} {r["batch"]:6s} compile {r["compile_s"]:6.1f} s  '
          f'step {r["step_s"]:7.3f} s  {r["updates_per_s"]:6.2f} upd/s  {r["gflop"]:8.1f} GFLOP  '
          f'{r["gflops_per_s"]:6.1f} GFLOP/s  host {r["host_s"] * 1e3:.0f} ms  XLA mem {r["xla_mem_mb"]:7.0f} MiB  device peak {r["peak_mb"]:.0f} MiB  params {r["params"]:,}  cores used {r["cores"]:.2f}  '
          f'kernel {r["kernel_s"]:.2f} s/update  page faults {r["faults"]:,.0f}/update',
          flush=True,
        )

  # After the steps, so that the device's peak memory above holds the steps' buffers only.
  n = roofline_size()
  roof = roofline_gflops(n)
  for r in rows:
    r['roof'] = r['gflops_per_s'] / roof
  print(f'\nroofline (same run): jitted {n} x {n} f32 matmul through XLA: {roof:.1f} GFLOP/s')
  print(
    '| preset | decoder | conv impl | dtype | step | batch | compile s | s/update | updates/s | GFLOP | GFLOP/s | '
    'of roofline | host ms/update | XLA mem MiB | device peak MiB | cores used | kernel s/update | '
    'page faults/update |'
  )
  print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(
      f'| {r["preset"]} | {r["kind"]} | {r["impl"]} | {r["dtype"]} | {r["step"]} | {r["batch"]} | {r["compile_s"]:.1f} | {r["step_s"]:.3f} | '
      f'{r["updates_per_s"]:.2f} | {r["gflop"]:.1f} | {r["gflops_per_s"]:.1f} | {r["roof"]:.0%} | {r["host_s"] * 1e3:.0f} | '
      f'{r["xla_mem_mb"]:.0f} | {r["peak_mb"]:.0f} | {r["cores"]:.2f} | {r["kernel_s"]:.2f} | {r["faults"]:,.0f} |'
    )
  print_ratios(rows, 'subpixel / transpose', 'kind', 'transpose', lambda r, o: f'FLOPs x{r["gflop"] / o["gflop"]:.2f}')
  print_ratios(rows, 'conv impl / xla', 'impl', 'xla', lambda r, o: '')
  print_ratios(
    rows,
    'bfloat16 / float32 products',
    'dtype',
    'float32',
    lambda r, o: f'memory x{r["xla_mem_mb"] / o["xla_mem_mb"]:.2f}',
  )
  print(f'\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB')
  if args.record:
    record_rows(rows, roof, args.record)


def record_rows(rows: list[dict], roof: float, path: str) -> None:
  """One JSON line per measured update of the presets' own settings (no --set or variant), replacing
  the line of the same preset, step and batch; `python -m benchmarks.report` puts them in the README."""
  import datetime
  import json

  from moto_jax import provenance

  prov = provenance.collect()
  if prov['dirty']:
    print(f'Not recorded in {path}: tracked files differ from the commit {prov["commit"]}')
    return
  new = [
    dict(
      preset=r['preset'],
      step=r['step'],
      batch=r['batch'],
      compile_s=round(r['compile_s'], 2),
      step_s=round(r['step_s'], 4),
      gflop=round(r['gflop'], 2),
      gflops=round(r['gflops_per_s'], 1),
      roofline_gflops=round(roof, 1),
      roofline_share=round(r['roof'], 3),
      commit=prov['commit'],
      machine=prov['machine'],
      versions=prov['versions'],
      date=datetime.date.today().isoformat(),
      allocator=allocator.status(),
      command='python -m benchmarks.train_step ' + ' '.join(sys.argv[1:]),
    )
    for r in rows
    if r.get('default')
  ]
  key = lambda r: (r['preset'], r['step'], r['batch'])
  old = []
  if os.path.exists(path):
    with open(path) as f:
      old = [json.loads(line) for line in f if line.strip()]
  kept = sorted([r for r in old if key(r) not in {key(n) for n in new}] + new, key=key)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    for r in kept:
      f.write(json.dumps(r, sort_keys=True) + '\n')
  print(f'Recorded {len(new)} row(s) in {path}')


if __name__ == '__main__':
  main()
