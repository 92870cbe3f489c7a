"""One command per figure of the paper (`launch.figures`): run, or resume, exactly the runs a figure
needs, one after the other, then draw it and write its numbers.

Runs live in `<out>/runs/<domain>-<preset>[-<hash of --override values>]/<variant>/<task>/seed<s>`
(runs with other overrides never mix with these); each is the main job
(`python -m launch.main` in a subprocess, its log beside it as `seed<s>.log`), so a run interrupted
in one session resumes in the next and a run finished for one figure serves every figure that
needs it (the `full` variant is shared by the learning curves, the ablations, the data-size table
and the bound). Each figure writes `<out>/<figure>.png` and `<out>/<figure>.json`.

  metaworld    Fig. 2: success rate against env steps per MetaWorld task (mean over seeds, each seed faint)
  kitchen      Fig. 3: success rate and target tasks completed per episode, Kitchen 'mixed' and 'partial'
  ablations    Fig. 5: full MOTO, No BC, No Unc., No BC + No Unc., DreamerV2 on one task
  subset       App. A.2: final success against the number of offline episodes trained on
  bound        App. B / Fig. 6: the return gap to the scripted expert and Eq. 12's bound during fine-tuning
  composition  App. A.1: a Kitchen 'partial' run's open-loop prediction of all four targets (Fig. 1, 4)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ABLATIONS = {
  'full': {},
  'no_bc': {'agent.bc_scale': 0},
  'no_unc': {'agent.penalty_scale': 0},
  'no_bc_no_unc': {'agent.bc_scale': 0, 'agent.penalty_scale': 0},
  'dreamerv2': {'agent.mode': 'dreamerv2'},
}
LABELS = {
  'full': 'MOTO',
  'no_bc': 'No BC',
  'no_unc': 'No Unc.',
  'no_bc_no_unc': 'No BC, No Unc.',
  'dreamerv2': 'DreamerV2',
}
# Per domain: the tasks a figure uses by default at the CPU budget, and A.2's dataset sizes.
DEFAULT_TASKS = {
  'metaworld': ('drawer-open', 'window-open', 'plate-slide', 'coffee-push', 'door-open'),
  'kitchen': ('mixed', 'partial'),
}
SUBSET_SIZES = {'metaworld': (2, 5, 10), 'kitchen': (100, 250, 300)}


# --- runs --------------------------------------------------------------------------------------


def workdir(out: str, domain: str, preset: str, variant: str, task: str, seed: int, extra: tuple[str, ...] = ()) -> str:
  """A run's folder; runs with extra overrides (`--override`) get their own, named by a hash of them."""
  group = f'{domain}-{preset}'
  if extra:
    group += '-' + hashlib.sha1('\n'.join(sorted(extra)).encode()).hexdigest()[:8]
  return os.path.join(out, 'runs', group, variant, task, f'seed{seed}')


def read_summary(path: str) -> dict | None:
  try:
    with open(os.path.join(path, 'summary.json')) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def read_evals(path: str) -> list[dict]:
  from moto_jax.training.logger import read_metrics  # tolerates a torn last line

  if not os.path.exists(os.path.join(path, 'metrics.jsonl')):
    return []
  return [r for r in read_metrics(path) if r.get('phase') == 'eval']


def run(
  domain: str,
  task: str,
  preset: str,
  seed: int,
  path: str,
  overrides: dict | None = None,
  extra: tuple[str, ...] = (),
  train: bool = True,
  log=print,
) -> dict | None:
  """Runs (or resumes) the main job in `path` unless it has finished; returns its summary (None if
  it has not finished: `train=False`, or the job failed, its log says why)."""
  summary = read_summary(path)
  if summary is not None and summary.get('phase') == 'done':
    return summary
  if not train:
    return None
  cmd = [
    sys.executable,
    '-m',
    'launch.main',
    f'--config=configs/{domain}.py:{task},{preset}',
    f'--workdir={os.path.abspath(path)}',
    f'--config.seed={seed}',
    *[f'--config.{k}={v}' for k, v in (overrides or {}).items()],
    *extra,
  ]
  log('$ ' + ' '.join(cmd[1:]))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.log', 'a') as f:
    rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
  if rc != 0:
    log(f'  exit status {rc}; see {path}.log')
  summary = read_summary(path)
  return summary if summary is not None and summary.get('phase') == 'done' else None


def _row(summary: dict | None, evals: list[dict]) -> dict:
  """What a figure records of one run."""
  if summary is None:
    return {'finished': False, 'evaluations': len(evals)}
  keys = (
    'offline_success_rate',
    'min_online_success_rate',
    'final_success_rate',
    'final_return',
    'eval_episodes',
    'wall_minutes',
    'env_steps',
    'grad_steps',
  )
  row = {'finished': True, **{k: summary.get(k) for k in keys}}
  if evals and 'eval/tasks_completed' in evals[-1]:
    row['final_tasks_completed'] = evals[-1]['eval/tasks_completed']
  return row


def _variant(out, domain, preset, variant, task, seeds, overrides=None, extra=(), train=True, log=print):
  """Runs (or reads) one variant of one task over the seeds: (evaluations by seed, its JSON entry)."""
  runs, rows = {}, {}
  for seed in seeds:
    path = workdir(out, domain, preset, variant, task, seed, extra)
    summary = run(domain, task, preset, seed, path, overrides, extra=extra, train=train, log=log)
    runs[seed] = read_evals(path)
    rows[seed] = _row(summary, runs[seed])
  entry = {'seeds': rows, 'median_final_success': _median([r.get('final_success_rate') for r in rows.values()])}
  if overrides:
    entry['overrides'] = overrides
  return runs, entry


def _nan(x):
  """Missing values are drawn as gaps, not as zeros."""
  return math.nan if x is None else x


def _median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


# --- drawing -------------------------------------------------------------------------------------


def _plt():
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def _curves(ax, runs: dict, key: str = 'eval/success_rate', label: str | None = None, color=None):
  """Each seed faint, their mean (over the seeds that reached each point) bold."""
  by_step = {}
  for evals in runs.values():
    xs = [e['env_steps'] for e in evals if key in e]
    ys = [e[key] for e in evals if key in e]
    if xs:
      (line,) = ax.plot(xs, ys, alpha=0.3, linewidth=1, color=color)
      color = line.get_color()
    for x, y in zip(xs, ys):
      by_step.setdefault(x, []).append(y)
  if by_step:
    xs = sorted(by_step)
    ax.plot(xs, [sum(by_step[x]) / len(by_step[x]) for x in xs], marker='o', markersize=3, color=color, label=label)
  ax.axvline(0, color='gray', linestyle='--', linewidth=1)
  ax.grid(alpha=0.3)


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  _plt().close(fig)
  return path


def _write(out: str, name: str, result: dict, fig) -> dict:
  result['png'] = _save(fig, os.path.join(out, f'{name}.png'))
  with open(os.path.join(out, f'{name}.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return result


# --- figures --------------------------------------------------------------------------------------


def learning_curves(out, domain, preset, tasks, seeds, train=True, extra=(), log=print, name=None):
  """Fig. 2 (MetaWorld) / Fig. 3 (Kitchen): one panel per task, success rate against env steps;
  Kitchen adds the target tasks completed per episode."""
  plt = _plt()
  kitchen = domain == 'kitchen'
  fig, axes = plt.subplots(
    2 if kitchen else 1, len(tasks), figsize=(3.3 * len(tasks), 5.6 if kitchen else 3.0), squeeze=False
  )
  result = {'figure': name or domain, 'domain': domain, 'preset': preset, 'seeds': list(seeds), 'tasks': {}}
  for i, task in enumerate(tasks):
    runs, result['tasks'][task] = _variant(out, domain, preset, 'full', task, seeds, None, extra, train, log)
    _curves(axes[0][i], runs)
    axes[0][i].set_title(task, fontsize=9)
    axes[0][i].set_ylim(-0.05, 1.05)
    if kitchen:
      _curves(axes[1][i], runs, 'eval/tasks_completed')
      axes[1][i].set_ylim(-0.1, 4.1)
      axes[1][i].set_ylabel('target tasks completed')
    axes[-1][i].set_xlabel('env steps (0 = offline end)', fontsize=8)
  axes[0][0].set_ylabel('success rate')
  fig.suptitle(f'{domain} ({preset}), seeds {",".join(map(str, seeds))}', fontsize=9)
  return _write(out, name or domain, result, fig)


def ablations(out, domain, preset, tasks, seeds, train=True, extra=(), log=print):
  """Fig. 5: every variant's success curve on each task, and their final success side by side."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(3.6 * (len(tasks) + 1), 3.2), squeeze=False)
  result = {'figure': 'ablations', 'domain': domain, 'preset': preset, 'seeds': list(seeds), 'tasks': {}}
  finals = {}
  for i, task in enumerate(tasks):
    result['tasks'][task] = {}
    for variant, overrides in ABLATIONS.items():
      runs, result['tasks'][task][variant] = _variant(
        out, domain, preset, variant, task, seeds, overrides, extra, train, log
      )
      finals.setdefault(variant, []).append(result['tasks'][task][variant]['median_final_success'])
      _curves(axes[0][i], runs, label=LABELS[variant])
    axes[0][i].set_title(task, fontsize=9)
    axes[0][i].set_ylim(-0.05, 1.05)
    axes[0][i].set_xlabel('env steps (0 = offline end)', fontsize=8)
  axes[0][0].set_ylabel('success rate')
  axes[0][0].legend(fontsize=7)
  names = list(ABLATIONS)
  axes[0][-1].bar(range(len(names)), [_nan(_median(finals[v])) for v in names])
  axes[0][-1].set_xticks(range(len(names)), [LABELS[v] for v in names], rotation=30, fontsize=7)
  axes[0][-1].set_ylim(0, 1.05)
  axes[0][-1].set_title('final success (median)', fontsize=9)
  return _write(out, 'ablations', result, fig)


def subset(out, domain, preset, tasks, seeds, train=True, extra=(), sizes=None, log=print, get_config=None):
  """App. A.2: final success against the number of offline episodes trained on (`data.subset_episodes`;
  the full dataset's size is the `full` run). `get_config(domain, task, preset)` gives the config a
  run starts from (the caller's config files), for the dataset's size."""
  from moto_jax.training import config_check

  if get_config is None:
    raise ValueError("the subset figure needs get_config(domain, task, preset) for the dataset's size")
  plt = _plt()
  sizes = tuple(sizes or SUBSET_SIZES[domain])
  fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(3.6 * (len(tasks) + 1), 3.2), squeeze=False)
  result = {'figure': 'subset', 'domain': domain, 'preset': preset, 'seeds': list(seeds), 'tasks': {}}
  for i, task in enumerate(tasks):
    config = get_config(domain, task, preset).unlock()
    for item in extra:  # the overrides may change the dataset's size
      config_check.override(config, item[len('--config.') :])
    total = config.data.num_episodes
    result['tasks'][task] = {}
    for n in sorted({min(n, total) for n in sizes}):
      variant, overrides = ('full', {}) if n >= total else (f'subset{n}', {'data.subset_episodes': n})
      runs, result['tasks'][task][str(n)] = _variant(
        out, domain, preset, variant, task, seeds, overrides, extra, train, log
      )
      _curves(axes[0][i], runs, label=f'{n} episodes' + (' (all)' if n == total else ''))
    axes[0][i].set_title(task, fontsize=9)
    axes[0][i].set_ylim(-0.05, 1.05)
    axes[0][i].set_xlabel('env steps (0 = offline end)', fontsize=8)
    axes[0][i].legend(fontsize=7)
    xs = [int(k) for k in result['tasks'][task]]
    axes[0][-1].plot(
      xs, [_nan(result['tasks'][task][str(x)]['median_final_success']) for x in xs], marker='o', label=task
    )
  axes[0][0].set_ylabel('success rate')
  axes[0][-1].set_xlabel('offline episodes')
  axes[0][-1].set_ylabel('final success (median)')
  axes[0][-1].set_ylim(-0.05, 1.05)
  axes[0][-1].legend(fontsize=7)
  return _write(out, 'subset', result, fig)


def _subset_variants(out, domain, preset, task, seed, extra) -> list[str]:
  """The `subset<N>` runs of a task and seed on disk (the `subset` figure's), smallest N first."""
  group = os.path.dirname(os.path.dirname(os.path.dirname(workdir(out, domain, preset, 'full', task, seed, extra))))
  found = [
    v
    for v in (os.listdir(group) if os.path.isdir(group) else [])
    if v.startswith('subset') and v[6:].isdigit() and os.path.isdir(workdir(out, domain, preset, v, task, seed, extra))
  ]
  return sorted(found, key=lambda v: int(v[6:]))


def bound(out, domain, preset, tasks, seeds, train=True, extra=(), log=print):
  """App. B / Fig. 6: per task and seed, the discounted return gap J(expert) - J(agent) and the bound
  2 lambda_u eps_hat of Eq. 12 against env steps (logged at every evaluation) of the `full` run, and
  of the `subset` figure's runs with fewer offline episodes where they are on disk (not trained here)."""
  from moto_jax.training.bound import draw_bound

  plt = _plt()
  panels = [
    (t, s, v) for t in tasks for s in seeds for v in _subset_variants(out, domain, preset, t, s, extra) + ['full']
  ]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.2), squeeze=False)
  result = {'figure': 'bound', 'domain': domain, 'preset': preset, 'runs': {}}
  for ax, (task, seed, variant) in zip(axes[0], panels):
    path = workdir(out, domain, preset, variant, task, seed, extra)
    if variant == 'full':
      run(domain, task, preset, seed, path, extra=extra, train=train, log=log)
    rows = draw_bound(ax, read_evals(path))
    keys = (
      'env_steps',
      'bound/return_gap',
      'bound/bound',
      'bound/estimate',
      'bound/expert_return',
      'bound/agent_return',
      'eval/success_rate',
    )
    name = f'{task}/seed{seed}' + ('' if variant == 'full' else f'/{variant}')
    result['runs'][name] = {
      'evaluations': [{k: e[k] for k in keys if k in e} for e in rows],
      'gap_within_bound': (sum(e['bound/return_gap'] <= e['bound/bound'] for e in rows) / len(rows)) if rows else None,
    }
    label = 'all offline episodes' if variant == 'full' else f'{variant[6:]} offline episodes'
    ax.set_title(f'{task}, seed {seed}, {label}' + ('' if rows else ' (no run on disk)'), fontsize=9)
  return _write(out, 'bound', result, fig)


def composition(out, domain, preset, tasks, seeds, train=True, extra=(), log=print):
  """App. A.1 on the `full` Kitchen 'partial' run of the first seed (analysis/composition.py)."""
  import shutil

  from moto_jax.analysis.composition import composition_report

  if domain != 'kitchen' or list(tasks) != ['partial']:
    raise ValueError("The composition figure reads a Kitchen 'partial' run: --domain=kitchen --tasks=partial")
  path = workdir(out, domain, preset, 'full', 'partial', seeds[0], extra)
  if run(domain, 'partial', preset, seeds[0], path, extra=extra, train=train, log=log) is None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis('off')
    ax.text(0.5, 0.5, f'The Kitchen partial run has not finished:\n{path}', ha='center', va='center', fontsize=8)
    return _write(out, 'composition', {'figure': 'composition', 'run': path, 'finished': False}, fig)
  report = composition_report(path, log=log)
  result = {'figure': 'composition', 'run': path, **report}
  result['png'] = shutil.copyfile(report['png'], os.path.join(out, 'composition.png'))
  shutil.copyfile(report['gif'], os.path.join(out, 'composition.gif'))
  with open(os.path.join(out, 'composition.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return result


FIGURES = {
  'metaworld': ('metaworld', lambda out, d, *a, **k: learning_curves(out, d, *a, name='metaworld', **k)),
  'kitchen': ('kitchen', lambda out, d, *a, **k: learning_curves(out, d, *a, name='kitchen', **k)),
  'ablations': ('metaworld', ablations),
  'subset': ('metaworld', subset),
  'bound': ('metaworld', bound),
  'composition': ('kitchen', composition),
}


def make_figure(
  name: str,
  out: str,
  domain: str | None = None,
  preset: str = 'small',
  tasks: list[str] | None = None,
  seeds: list[int] = (0,),
  train: bool = True,
  extra: tuple[str, ...] = (),
  log=print,
  get_config=None,
) -> dict:
  """Runs (or resumes) the runs figure `name` needs and draws it; returns its numbers (also in
  `<out>/<name>.json`). `domain` defaults to the figure's own; `tasks` to the domain's defaults
  (`composition`: 'partial'; `ablations`, `subset`, `bound`: the first default task). `get_config`
  (`subset` only): `get_config(domain, task, preset)` -> the config a run starts from."""
  if name not in FIGURES:
    raise ValueError(f'Unknown figure {name!r}; one of: {", ".join(FIGURES)}')
  default_domain, fn = FIGURES[name]
  domain = domain or default_domain
  if domain not in DEFAULT_TASKS:
    raise ValueError(f'Unknown domain {domain!r}; one of: {", ".join(DEFAULT_TASKS)}')
  if not tasks:
    tasks = list(DEFAULT_TASKS[domain])
    if name == 'composition':
      tasks = ['partial']
    elif name in ('ablations', 'subset', 'bound'):
      tasks = tasks[:1]
  os.makedirs(out, exist_ok=True)
  kwargs = {'get_config': get_config} if name == 'subset' else {}
  return fn(out, domain, preset, list(tasks), list(seeds), train=train, extra=tuple(extra), log=log, **kwargs)
