r"""Learning table: runs (or resumes) the main job over tasks x seeds, records each finished run.

  python -m benchmarks.learning --tasks=drawer-open,door-open --seeds=0,1,2
  python -m benchmarks.learning --tasks=window-open --seeds=0 --arm=bc --config.agent.mode=bc

Each run is `python -m launch.main --config=configs/<domain>.py:<task>,<preset>
--workdir=<out>/<domain>-<preset>/<arm>/<task>/seed<s> --config.seed=<s> [overrides]`, one after the
other (never two at once on a small machine). A finished run is not rerun; an interrupted one resumes.
`--arm` names the overrides (default `moto` without overrides); every `--config.*` flag is passed on.

Each finished run becomes one JSON line of `--record` (default `results/learning.jsonl`, committed):
task, arm, overrides, seed, the commit and machine it ran on, the golden-file hash of the update
(moto_jax/testing.py) and the hash of its learning config, steps, success at the offline end, the
lowest after it and the final one, return, evaluation episodes, wall minutes split into parts, and the
success curve. A record of the same domain, preset, task, arm and seed is replaced (git keeps the old).
`python -m benchmarks.report` turns the records into the README's table and figure (the paper's arms) and
docs/RESULTS.md (every arm).
`--report_only` prints the table of the runs on disk without training.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

from moto_jax import provenance, testing
from moto_jax.training import config_check
from moto_jax.training.logger import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = os.path.join(ROOT, 'results', 'learning.jsonl')
KEY = ('domain', 'preset', 'task', 'arm', 'seed')


def command(domain: str, task: str, preset: str, seed: int, workdir: str, overrides: list[str]) -> list[str]:
  return [
    'python',
    '-m',
    'launch.main',
    f'--config=configs/{domain}.py:{task},{preset}',
    f'--workdir={workdir}',
    f'--config.seed={seed}',
    *overrides,
  ]


def run_one(cmd: list[str], workdir: str) -> int:
  print('$ ' + ' '.join(cmd), flush=True)
  log = workdir + '.log'
  os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
  with open(log, 'a') as f:
    return subprocess.call([sys.executable, *cmd[1:]], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)


def read_json(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def make_record(workdir: str, arm: str, overrides: list[str], cmd: list[str]) -> dict | None:
  """The record of a finished run in `workdir` (None if it has not finished)."""
  summary = read_json(os.path.join(workdir, 'summary.json'))
  config = read_json(os.path.join(workdir, config_check.CONFIG_FILE))
  if summary is None or summary.get('phase') != 'done' or config is None:
    return None
  evals = [r for r in read_metrics(workdir) if r.get('phase') == 'eval']
  prov = summary.get('provenance') or {}
  # The update's golden hash when the run trained (older runs: the golden file at their commit).
  golden = prov.get('golden') or (testing.golden_hash_at(prov['commit']) if prov.get('commit') else None)
  return dict(
    domain=config['domain'],
    task=summary['task'],
    preset=summary['preset'],
    arm=arm,
    overrides=overrides,
    seed=summary['seed'],
    commit=prov.get('commit'),
    dirty=prov.get('dirty'),
    golden=golden,
    config_hash=config_check.learning_hash(config),
    commits=summary.get('commits') or [prov.get('commit')],
    env_steps=summary['env_steps'],
    grad_steps=summary['grad_steps'],
    offline_success=summary['offline_success_rate'],
    min_online_success=summary['min_online_success_rate'],
    final_success=summary['final_success_rate'],
    final_return=summary['final_return'],
    eval_episodes=summary['eval_episodes'],
    wall_minutes=round(summary['wall_minutes'], 2),
    minutes={k: round(v / 60, 2) for k, v in (summary.get('seconds') or {}).items()},
    machine=prov.get('machine'),
    versions=prov.get('versions'),
    command=' '.join(cmd),
    date=prov.get('date')
    or datetime.date.fromtimestamp(os.path.getmtime(os.path.join(workdir, 'summary.json'))).isoformat(),
    curve=[[int(e['env_steps']), e['eval/success_rate']] for e in evals],
    **tasks_fields(evals),
    done_line=last_done_line(workdir),
  )


def tasks_fields(evals: list[dict]) -> dict:
  """Kitchen's target tasks per evaluation episode, at the offline end, at the end and at every
  evaluation (`tasks_curve`); {} for a domain without target tasks."""
  evals = [e for e in evals if 'eval/tasks_completed' in e]
  if not evals:
    return {}
  offline = [e for e in evals if e['env_steps'] == 0]
  return dict(
    offline_tasks=offline[-1]['eval/tasks_completed'] if offline else None,
    final_tasks=evals[-1]['eval/tasks_completed'],
    tasks_curve=[[int(e['env_steps']), e['eval/tasks_completed']] for e in evals],
  )


def check_workdir_config(workdir: str, domain: str, task: str, preset: str, seed: int, overrides: list[str]) -> None:
  """Refuses a workdir whose run has another learning config than this command asks for (another
  arm's overrides under the same name, or a preset changed since): its numbers are not this arm's."""
  import importlib

  recorded = read_json(os.path.join(workdir, config_check.CONFIG_FILE))
  if recorded is None:
    return
  config = importlib.import_module(f'configs.{domain}').get_config(f'{task},{preset}').unlock()
  for item in overrides:
    config_check.override(config, item[len('--config.') :])
  config.seed = seed
  if config_check.learning_hash(recorded) != config_check.learning_hash(config):
    fields = config_check.config_diff(
      {k: v for k, v in recorded.items() if k != config_check.PROVENANCE_KEY}, config_check.to_dict(config)
    )
    raise SystemExit(
      f'{workdir} holds a run with another config than this command asks for ({", ".join(fields)}): '
      'give this arm its own --arm name or --out, or remove the workdir.'
    )


def last_done_line(workdir: str) -> str | None:
  """The `Done:` line the run printed last (its console log is `<workdir>.log`)."""
  if not os.path.exists(workdir + '.log'):
    return None
  with open(workdir + '.log', errors='replace') as f:
    lines = [line.strip() for line in f if line.startswith('Done: ')]
  return lines[-1] if lines else None


def read_records(path: str = RECORDS) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_record(record: dict, path: str = RECORDS, key: tuple[str, ...] = KEY) -> None:
  """Adds `record`, replacing one with the same `key` fields; the file stays sorted by them."""
  kept = [r for r in read_records(path) if tuple(r[k] for k in key) != tuple(record[k] for k in key)]
  kept.append(record)
  kept.sort(key=lambda r: tuple(str(r[k]) for k in key))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    for r in kept:
      f.write(json.dumps(r, sort_keys=True) + '\n')
  os.replace(tmp, path)


def fmt(x, spec='.2f'):
  return '-' if x is None else format(x, spec)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--domain', default='metaworld', choices=('metaworld', 'kitchen'))
  p.add_argument('--tasks', default='drawer-open')
  p.add_argument('--seeds', default='0')
  p.add_argument('--preset', default='small')
  p.add_argument('--arm', default='', help='name of this set of overrides (default: moto without overrides)')
  p.add_argument('--out', default='runs/learning', help='workdirs go under here')
  p.add_argument('--record', default=RECORDS, help='JSON-lines file of finished runs ("" = none)')
  p.add_argument('--report_only', action='store_true', help='print what is on disk; train nothing')
  args, extra = p.parse_known_args(argv)
  unknown = [a for a in extra if not a.startswith('--config.')]
  if unknown:
    p.error(f'unknown arguments {unknown}: only --config.<field>=<value> overrides are passed on')
  arm = args.arm or ('moto' if not extra else None)
  if arm is None:
    p.error('name the overrides with --arm (e.g. --arm=bc for --config.agent.mode=bc)')
  print(f'Code: {provenance.code()}; golden {testing.golden_hash()}', flush=True)
  lines = [
    '| task | arm | seed | offline end | lowest online | final | eval episodes | wall min |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for task in [t for t in args.tasks.split(',') if t]:
    for seed in [int(s) for s in args.seeds.split(',') if s]:
      workdir = os.path.join(args.out, f'{args.domain}-{args.preset}', arm, task, f'seed{seed}')
      cmd = command(args.domain, task, args.preset, seed, workdir, extra)
      check_workdir_config(workdir, args.domain, task, args.preset, seed, extra)
      record = make_record(workdir, arm, extra, cmd)
      if record is None and not args.report_only:
        rc = run_one(cmd, workdir)
        if rc != 0:
          print(f'{task} seed {seed}: exit status {rc}; log in {workdir}.log', flush=True)
        record = make_record(workdir, arm, extra, cmd)
      if record is None:
        lines.append(f'| {task} | {arm} | {seed} | not finished | | | | |')
        continue
      if args.record and not args.report_only:
        write_record(record, args.record)
      lines.append(
        f'| {task} | {arm} | {seed} | {fmt(record["offline_success"])} | '
        f'{fmt(record["min_online_success"])} | {fmt(record["final_success"])} | '
        f'{record["eval_episodes"]} | {record["wall_minutes"]:.1f} |'
      )
      print(lines[-1], flush=True)
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
