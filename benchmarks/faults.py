"""Fault campaign: interrupt runs at random moments, resume them, and compare with an uninterrupted run.

Runs `launch.main` on a preset (default `debug`) once without interruption, then N trials: each
starts the same command in its own workdir, sends a signal (default SIGKILL) at a random moment
(seeded), starts the same command again, and repeats until the run finishes (`--faults_per_trial`
interruptions). Each finished trial is compared with the reference:

* `summary.json` (wall-clock fields left out),
* every record of `metrics.jsonl` (the `time` field left out),
* the online episode files (every array),
* the final checkpoint's parameters, optimiser state and counters (every array, bitwise).

and the script prints `k/N identical`, with the first difference of any trial that is not.

  python -m benchmarks.faults --trials=8 --seed=0 --out=runs/faults [--signal=KILL|INT|TERM|mixed]
      [--env_steps=200] [--preset=debug] [--faults_per_trial=1]
  python -m benchmarks.faults --trials=3 --signal=KILL,INT,TERM     # signals cycled over the trials
  python -m benchmarks.faults --plan="grad_step=2:KILL,episode=2:INT;checkpoint=4:KILL,grad_step=9:TERM"
      # stops at chosen points of the run (after a gradient step, after an online episode, inside a
      # checkpoint save), independent of the machine's speed; also checks the kept checkpoints and
      # the order of metrics.jsonl on the resumed run
  python -m benchmarks.faults --trials=1 --min_interruptions=20 --faults_per_trial=6 --signal=mixed
      # as many trials as it takes for 20 signals to hit a running job (a signal drawn after the
      # run has finished hits nothing; the trial then stops drawing them)

Compiles go through a persistent compilation cache in `<out>/jax_cache`, so each restart costs
seconds, not a full compile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIGNALS = {'KILL': signal.SIGKILL, 'INT': signal.SIGINT, 'TERM': signal.SIGTERM}
WALL_FIELDS = ('wall_seconds', 'wall_minutes', 'seconds', 'provenance')  # vary by machine and moment
VARYING = WALL_FIELDS + ('metrics_bytes',)  # the log's byte length varies with its timestamps


def command(workdir: str, args) -> list[str]:
  return [
    sys.executable,
    '-m',
    'launch.main',
    f'--config=configs/metaworld.py:{args.task},{args.preset}',
    f'--workdir={workdir}',
    f'--config.data.cache_dir={os.path.join(args.out, "data")}',
    f'--config.train.env_steps={args.env_steps}',
    f'--config.train.offline_steps={args.offline_steps}',
    f'--config.train.checkpoint_every_steps={args.checkpoint_every_steps}',
    f'--config.seed={args.run_seed}',
  ]


def environment(args) -> dict:
  env = dict(
    os.environ,
    MUJOCO_GL=os.environ.get('MUJOCO_GL', 'egl'),
    JAX_COMPILATION_CACHE_DIR=(
      os.environ.get('JAX_COMPILATION_CACHE_DIR')  # the test session's
      or os.path.join(os.path.abspath(args.out), 'jax_cache')
    ),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
  )
  if args.fast_compile:
    env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = 'true'
  return env


def run(
  workdir: str, args, kill_after: float | None = None, sig=signal.SIGKILL, fault: str | None = None
) -> tuple[int, float, str, bool]:
  """Runs the command; with `kill_after`, sends `sig` after that many seconds (if still running).

  Returns (return code, seconds, last output lines, whether the signal was sent).
  """
  t0 = time.time()
  env = environment(args)
  env.pop('MOTO_FAULT', None)
  if fault:  # the run stops itself at a chosen point (moto_jax/training/stopping.py)
    env['MOTO_FAULT'] = fault
  proc = subprocess.Popen(
    command(workdir, args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  interrupted = False
  if kill_after is not None:
    try:
      proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
      proc.send_signal(sig)
      interrupted = True
  out, _ = proc.communicate()
  return proc.returncode, time.time() - t0, (out or '')[-2000:], interrupted


def load_final(workdir: str) -> dict:
  """Everything a trial is compared on."""
  import orbax.checkpoint as ocp

  from moto_jax.data import episodes as ep_lib
  from moto_jax.training import checkpoint as ckpt_lib
  from moto_jax.training.logger import read_metrics

  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = {k: v for k, v in json.load(f).items() if k not in WALL_FIELDS}
  metrics = [{k: v for k, v in r.items() if k != 'time'} for r in read_metrics(workdir)]
  episodes = [ep_lib.load_episode(p) for p in ep_lib.episode_files(os.path.join(workdir, 'episodes'))]
  ckpt = ckpt_lib.Checkpointer(workdir)
  step = ckpt.latest_step()
  counters = {k: v for k, v in ckpt.read_counters(step).items() if k not in VARYING}
  ckpt.close()
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  import jax

  checkpointer = ocp.StandardCheckpointer()
  meta = checkpointer.metadata(path)
  meta = getattr(meta, 'item_metadata', meta)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
  state = checkpointer.restore(path, target)
  return {
    'summary': summary,
    'metrics': metrics,
    'episodes': episodes,
    'counters': counters,
    'state': state,
    'step': step,
  }


def first_difference(ref: dict, got: dict) -> str | None:
  """A one-line description of the first difference, or None when identical."""
  import jax

  if ref['summary'] != got['summary']:
    keys = [k for k in ref['summary'] if ref['summary'].get(k) != got['summary'].get(k)]
    return f'summary.json: {keys[0]}: {ref["summary"].get(keys[0])} vs {got["summary"].get(keys[0])}'
  if len(ref['metrics']) != len(got['metrics']):
    n = min(len(ref['metrics']), len(got['metrics']))
    first = next((i for i in range(n) if ref['metrics'][i] != got['metrics'][i]), n)
    return (
      f'metrics.jsonl: {len(ref["metrics"])} vs {len(got["metrics"])} records; first differing record '
      f'{first}: {ref["metrics"][first] if first < len(ref["metrics"]) else None}'
    )
  for i, (a, b) in enumerate(zip(ref['metrics'], got['metrics'])):
    if a != b:
      keys = [k for k in a if a.get(k) != b.get(k)] or list(b)
      return f'metrics.jsonl record {i} ({a.get("phase")} step {a.get("step")}): {keys[0]}: {a.get(keys[0])} vs {b.get(keys[0])}'
  if len(ref['episodes']) != len(got['episodes']):
    return f'online episodes: {len(ref["episodes"])} vs {len(got["episodes"])}'
  for i, (a, b) in enumerate(zip(ref['episodes'], got['episodes'])):
    for k in a:
      if not np.array_equal(a[k], b.get(k)):
        return f'online episode {i}: {k} differs'
  if ref['step'] != got['step'] or ref['counters'] != got['counters']:
    return f'final checkpoint: step {ref["step"]} vs {got["step"]}, counters {ref["counters"]} vs {got["counters"]}'
  leaves_a = jax.tree_util.tree_leaves_with_path(ref['state'])
  leaves_b = dict(jax.tree_util.tree_leaves_with_path(got['state']))
  for path, a in leaves_a:
    b = leaves_b.get(path)
    if b is None or not np.array_equal(np.asarray(a), np.asarray(b)):
      return f'final state: {jax.tree_util.keystr(path)} differs'
  return None


def invariants(workdir: str, keep: int = 3) -> list[str]:
  """What a finished run's files must satisfy however often it was stopped: at most `keep`
  checkpoints; in metrics.jsonl, each phase's records in non-decreasing `step`, evaluation and refit
  records at `step` = their `env_steps`, and no record written twice."""
  from moto_jax.training.logger import read_metrics

  problems = []
  directory = os.path.join(workdir, 'checkpoints')
  steps = [n for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
  if len(steps) > keep:
    problems.append(f'{len(steps)} checkpoints kept ({sorted(map(int, steps))}); at most {keep}')
  records = read_metrics(workdir)
  last = {}
  for i, r in enumerate(records):
    # An online phase interleaves episode records (step: env steps) and training records (grad steps).
    phase, step = (r.get('phase'), 'episode/return' in r), r.get('step')
    if step < last.get(phase, step):
      problems.append(f'metrics.jsonl record {i}: {phase[0]} step {step} after {last[phase]}')
    last[phase] = step
    if phase[0] in ('eval', 'refit') and step != int(r['env_steps']):
      problems.append(f'metrics.jsonl record {i}: {phase} step {step} but env_steps {r["env_steps"]}')
  seen = [json.dumps({k: v for k, v in r.items() if k != 'time'}, sort_keys=True) for r in records]
  if len(set(seen)) != len(seen):
    problems.append(f'metrics.jsonl: {len(seen) - len(set(seen))} records written twice')
  return problems


def planned_trial(workdir: str, args, faults: list[str]) -> list[str]:
  """Runs the command once per fault of `faults` (each run stops itself at its point), then once
  to the end; returns what each stop did."""
  done = []
  for fault in faults:
    code, _, out, _ = run(workdir, args, fault=fault)
    finished = (
      os.path.exists(os.path.join(workdir, 'summary.json'))
      and json.load(open(os.path.join(workdir, 'summary.json'))).get('phase') == 'done'
    )
    done.append(f'{fault}' + (' (not reached)' if finished else f' (exit {code})'))
  return done


def campaign(args) -> tuple[int, list[dict]]:
  """Runs the reference and the trials; returns (identical count, per-trial rows)."""
  os.makedirs(args.out, exist_ok=True)
  ref_dir = os.path.join(args.out, 'reference')
  if not os.path.exists(os.path.join(ref_dir, 'summary.json')):
    shutil.rmtree(ref_dir, ignore_errors=True)
    code, seconds, out, _ = run(ref_dir, args)  # fills the compilation cache too
    if code != 0:
      raise RuntimeError(f'the reference run failed ({code}):\n{out}')
    print(f'reference: {seconds:.1f} s', flush=True)
  ref = load_final(ref_dir)
  # A second uninterrupted run, with the compilation cache warm: its length bounds the fault moments,
  # and it must itself be identical to the reference (determinism across processes).
  warm_dir = os.path.join(args.out, 'warm')
  shutil.rmtree(warm_dir, ignore_errors=True)
  code, ref_seconds, out, _ = run(warm_dir, args)
  if code != 0:
    raise RuntimeError(f'the warm uninterrupted run failed ({code}):\n{out}')
  diff = first_difference(ref, load_final(warm_dir))
  print(
    f'uninterrupted run with a warm cache: {ref_seconds:.1f} s, '
    + ('identical to the reference' if diff is None else f'DIFFERS from the reference: {diff}'),
    flush=True,
  )
  rng = np.random.default_rng(args.seed)
  rows, identical, interruptions = [], 0, 0
  for k, plan in enumerate(p for p in (args.plan or '').split(';') if p):
    workdir = os.path.join(args.out, f'planned{k}')
    shutil.rmtree(workdir, ignore_errors=True)
    faults = planned_trial(workdir, args, plan.split(','))
    code, _, out, _ = run(workdir, args)
    diff = first_difference(ref, load_final(workdir)) if code == 0 else f'resume failed ({code}): {out[-500:]}'
    problems = invariants(workdir) if code == 0 else []
    result = diff or ('; '.join(problems) if problems else 'identical')
    identical += result == 'identical'
    rows.append({'trial': f'planned{k}', 'faults': faults, 'result': result})
    print(f'planned trial {k}: {" ".join(faults)} -> {result}', flush=True)
  if args.plan:
    return identical, rows
  k = 0
  while k < args.trials or interruptions < args.min_interruptions:
    workdir = os.path.join(args.out, f'trial{k}')
    shutil.rmtree(workdir, ignore_errors=True)
    faults = []
    for _ in range(args.faults_per_trial):
      cycle = args.signal.split(',')
      name = str(rng.choice(list(SIGNALS))) if args.signal == 'mixed' else cycle[k % len(cycle)]
      at = float(rng.uniform(0.5, ref_seconds))  # process start (imports, cache load) included
      _, _, _, sent = run(workdir, args, kill_after=at, sig=SIGNALS[name])
      faults.append(f'{name}@{at:.1f}s' + ('' if sent else '(finished first)'))
      interruptions += sent
      if not sent:  # the run is done: later signals would find nothing to stop
        break
    code, seconds, out, _ = run(workdir, args)
    if code != 0:
      rows.append({'trial': k, 'faults': faults, 'result': f'resume failed ({code}): {out[-500:]}'})
      print(rows[-1], flush=True)
      k += 1
      continue
    diff = first_difference(ref, load_final(workdir))
    identical += diff is None
    rows.append({'trial': k, 'faults': faults, 'result': 'identical' if diff is None else diff})
    print(f'trial {k}: {" ".join(faults)} -> {rows[-1]["result"]}', flush=True)
    k += 1
  return identical, rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--trials', type=int, default=8)
  parser.add_argument(
    '--faults_per_trial',
    type=int,
    default=1,
    help='signals per trial at most (a trial stops drawing them once its run has finished)',
  )
  parser.add_argument(
    '--min_interruptions',
    type=int,
    default=0,
    help='run more trials than --trials until this many signals hit a running job',
  )
  parser.add_argument('--seed', type=int, default=0, help='seeds the fault moments and signals')
  parser.add_argument(
    '--signal', default='KILL', help='KILL, INT, TERM, a comma list cycled over the trials, or mixed (random)'
  )
  parser.add_argument(
    '--plan',
    default='',
    help='stops at chosen points instead of random moments: trials separated by ";", each a comma list '
    'of <point>=<n>:<KILL|INT|TERM> (points: grad_step, episode, checkpoint), one per restart',
  )
  parser.add_argument('--task', default='drawer-open')
  parser.add_argument('--preset', default='debug')
  parser.add_argument('--run_seed', type=int, default=0, help='config.seed of the runs')
  parser.add_argument('--env_steps', type=int, default=200)
  parser.add_argument('--offline_steps', type=int, default=4)
  parser.add_argument('--checkpoint_every_steps', type=int, default=4)
  parser.add_argument('--fast_compile', type=int, default=1, help='JAX_DISABLE_MOST_OPTIMIZATIONS for the runs')
  parser.add_argument('--out', default='runs/faults')
  args = parser.parse_args()
  args.out = os.path.abspath(args.out)  # orbax restores from absolute paths only
  identical, rows = campaign(args)
  kills = sum(1 for r in rows for f in r['faults'] if 'finished first' not in f)
  print(f'\n{identical}/{len(rows)} identical to the uninterrupted run ({kills} interruptions of a running job)')
  for r in rows:
    if r['result'] != 'identical':
      print(f'  trial {r["trial"]} ({" ".join(r["faults"])}): {r["result"]}')
  sys.exit(0 if identical == len(rows) else 1)


if __name__ == '__main__':
  main()
