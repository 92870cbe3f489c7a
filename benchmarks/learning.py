r"""Learning table: runs (or resumes) the main job over tasks x seeds and prints what each reached.

  python benchmarks/learning.py --tasks=drawer-open --seeds=0,1,2 --out=runs/learning
  python benchmarks/learning.py --tasks=drawer-open,door-open,window-open,plate-slide,coffee-push \
      --seeds=0 --out=runs/learning --plot=docs/learning_curves.png

Each run is `python -m launch.main --config=configs/<domain>.py:<task>,<preset> --workdir=<out>/<task>/seed<s>
--config.seed=<s> [extra overrides]`, one after the other (never two at once on a small machine). A run
already finished is not rerun; an interrupted one resumes. `--report_only` prints the table of what is
on disk without training. Use a different `--out` per preset and domain (the workdirs are
`<out>/<task>/seed<s>`). The table: task, seed, wall minutes (data generation and compile included),
offline-end success, lowest success after the offline phase, final success, evaluation episodes.
"""
from __future__ import annotations

import os as _os
import sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))   # the repository root

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(domain: str, task: str, preset: str, seed: int, workdir: str, extra: list[str]) -> int:
  cmd = [sys.executable, '-m', 'launch.main', f'--config=configs/{domain}.py:{task},{preset}',
         f'--workdir={workdir}', f'--config.seed={seed}', *extra]
  print('$ ' + ' '.join(cmd), flush=True)
  log = os.path.join(workdir + '.log')
  os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
  with open(log, 'a') as f:
    return subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_evals(workdir: str) -> list[dict]:
  from moto_jax.training.logger import read_metrics   # tolerates a torn last line
  return [r for r in read_metrics(workdir) if r.get('phase') == 'eval']


def fmt(x, spec='.2f'):
  return '-' if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
  head = '| task | seed | wall min | offline-end success | lowest online success | final success | eval episodes |'
  lines = [head, '|' + '---|' * 7]
  for r in rows:
    lines.append(f"| {r['task']} | {r['seed']} | {fmt(r.get('wall_minutes'), '.1f')} | "
                 f"{fmt(r.get('offline_success_rate'))} | {fmt(r.get('min_online_success_rate'))} | "
                 f"{fmt(r.get('final_success_rate'))} | {r.get('eval_episodes', '-')} |")
  by_task = {}
  for r in rows:
    if r.get('final_success_rate') is not None:
      by_task.setdefault(r['task'], []).append(r)
  if by_task:
    lines.append('')
    lines.append('| task | seeds | median offline-end | median final | median wall min |')
    lines.append('|' + '---|' * 5)
    def med(rs, key, spec):
      values = [r[key] for r in rs if r.get(key) is not None]
      return format(statistics.median(values), spec) if values else '-'

    for task, rs in by_task.items():
      lines.append(f"| {task} | {len(rs)} | {med(rs, 'offline_success_rate', '.2f')} | "
                   f"{med(rs, 'final_success_rate', '.2f')} | {med(rs, 'wall_minutes', '.1f')} |")
  return '\n'.join(lines)


def plot(curves: dict, path: str):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  tasks = sorted({t for t, _ in curves})
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 2.8), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    for (t, seed), evals in sorted(curves.items()):
      if t == task and evals:
        ax.plot([e['env_steps'] for e in evals], [e['eval/success_rate'] for e in evals], marker='o',
                markersize=3, label=f'seed {seed}')
    ax.axvline(0, color='gray', linestyle='--', linewidth=1)
    ax.set_title(task, fontsize=9)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel('env steps (0 = offline end)', fontsize=8)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel('success rate')
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)
  print(f'Learning curves: {path}')


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--domain', default='metaworld', choices=('metaworld', 'kitchen'))
  p.add_argument('--tasks', default='drawer-open')
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--preset', default='small')
  p.add_argument('--out', default='runs/learning')
  p.add_argument('--plot', default='', help='write the learning curves of every run to this PNG')
  p.add_argument('--report_only', action='store_true', help='print the table of what is on disk; train nothing')
  args, extra = p.parse_known_args(argv)
  tasks = [t for t in args.tasks.split(',') if t]
  seeds = [int(s) for s in args.seeds.split(',') if s]
  rows, curves = [], {}
  for task in tasks:
    for seed in seeds:
      workdir = os.path.join(args.out, task, f'seed{seed}')
      summary = read_summary(workdir)
      if not args.report_only and (summary is None or summary.get('phase') != 'done'):
        rc = run_one(args.domain, task, args.preset, seed, workdir, extra)
        if rc != 0:
          print(f'{task} seed {seed}: exit status {rc}; log in {workdir}.log', flush=True)
        summary = read_summary(workdir)
      row = dict(task=task, seed=seed)
      if summary is not None and summary.get('phase') == 'done':
        row.update(summary)
      rows.append(row)
      curves[(task, seed)] = read_evals(workdir)
  print(table(rows))
  if args.plot:
    plot(curves, args.plot)


if __name__ == '__main__':
  main()
