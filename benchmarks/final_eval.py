r"""Finished runs' final checkpoints evaluated on many more start states than the run's own evaluations.

  python -m benchmarks.final_eval --preset=long --tasks=window-open --arms=bc-2demos,moto-2demos --episodes=100

A run's own evaluations use 20 episodes, so a success rate near 0.5 is known to about +-0.2 (95 %):
two arms on one seed rarely differ by more. This evaluates the last checkpoint of each finished run
`<out>/<domain>-<preset>/<arm>/<task>/seed<s>` (the workdirs `benchmarks.learning` makes) on
`--episodes` start states that no run trains or evaluates on (`launch.evaluate`, one process per
checkpoint, all arms on the same start states), and writes one JSON line per checkpoint to `--record`
(default `results/final_eval.jsonl`): the success rate, its 95 % Wilson interval, the run's commit and
this command's. `python -m benchmarks.report` puts them beside the learning table.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import subprocess
import sys

from benchmarks import learning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = os.path.join(ROOT, 'results', 'final_eval.jsonl')
KEY = ('domain', 'preset', 'task', 'arm', 'seed', 'episodes')
SEED_OFFSET = 6_000_000  # start states apart from the runs' (episode_seed offsets 0 and 5,000,000)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The 95 % Wilson score interval of a success rate."""
  if n == 0:
    return 0.0, 1.0
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(0.0, centre - half), min(1.0, centre + half)


def make_record(workdir: str, arm: str, evaluation: dict, cmd: str) -> dict:
  from moto_jax import provenance

  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'config.json')) as f:
    domain = json.load(f)['domain']
  n = int(evaluation['episodes'])
  wins = int(sum(evaluation['successes']))
  lo, hi = wilson(wins, n)
  prov = provenance.collect()
  return dict(
    domain=domain,
    preset=summary['preset'],
    task=summary['task'],
    arm=arm,
    seed=summary['seed'],
    episodes=n,
    successes=wins,
    success=round(wins / n, 4),
    interval=[round(lo, 4), round(hi, 4)],
    step=evaluation['step'],
    env_steps=evaluation['counters']['env_steps'],
    seed_offset=SEED_OFFSET,
    run_commit=(summary.get('provenance') or {}).get('commit'),
    in_run_final=summary['final_success_rate'],
    commit=prov['commit'],
    machine=prov['machine'],
    date=datetime.date.today().isoformat(),
    command=cmd,
  )


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--domain', default='metaworld')
  p.add_argument('--preset', default='small')
  p.add_argument('--tasks', default='drawer-open')
  p.add_argument('--arms', default='moto,bc')
  p.add_argument('--seeds', default='0')
  p.add_argument('--episodes', type=int, default=100)
  p.add_argument('--out', default='runs/learning', help='where benchmarks.learning put the workdirs')
  p.add_argument('--record', default=RECORDS, help='JSON-lines file of the evaluations ("" = none)')
  args = p.parse_args(argv)
  cmd = 'python -m benchmarks.final_eval ' + ' '.join(argv if argv is not None else sys.argv[1:])
  rows = []
  for task in args.tasks.split(','):
    for arm in args.arms.split(','):
      for seed in args.seeds.split(','):
        workdir = os.path.join(args.out, f'{args.domain}-{args.preset}', arm, task, f'seed{seed}')
        summary = os.path.join(workdir, 'summary.json')
        if not os.path.exists(summary) or json.load(open(summary)).get('phase') != 'done':
          print(f'{workdir}: no finished run, skipped', flush=True)
          continue
        for old in glob.glob(os.path.join(workdir, 'evaluate_*.json')):
          os.remove(old)
        call = [
          sys.executable,
          '-m',
          'launch.evaluate',
          f'--workdir={workdir}',
          f'--episodes={args.episodes}',
          f'--seed={SEED_OFFSET}',
        ]
        print('$ ' + ' '.join(call[1:]), flush=True)
        if subprocess.call(call, cwd=ROOT) != 0:
          raise SystemExit(f'{workdir}: launch.evaluate failed')
        (path,) = glob.glob(os.path.join(workdir, 'evaluate_[0-9]*.json'))
        with open(path) as f:
          record = make_record(workdir, arm, json.load(f), cmd)
        rows.append(record)
        if args.record:
          learning.write_record(record, args.record, KEY)
  print(f'\n{"task":<14} {"arm":<18} seed  success  95% interval  (in-run final, 20 episodes)')
  for r in rows:
    lo, hi = r['interval']
    print(
      f'{r["task"]:<14} {r["arm"]:<18} {r["seed"]:>4}  {r["success"]:7.2f}  [{lo:.2f}, {hi:.2f}]'
      f'    ({r["in_run_final"]:.2f})'
    )


if __name__ == '__main__':
  main()
