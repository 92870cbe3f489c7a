r"""One command per figure: runs (or resumes) the runs a figure needs, then draws it.

  python -m launch.figures --figure=metaworld --out=runs/figures            # Fig. 2 (5 tasks, seed 0)
  python -m launch.figures --figure=ablations --out=runs/figures            # Fig. 5 (drawer-open)
  python -m launch.figures --figure=subset --out=runs/figures               # App. A.2 (2, 5, 10 demos)
  python -m launch.figures --figure=bound --out=runs/figures                # App. B, Fig. 6
  python -m launch.figures --figure=kitchen --out=runs/figures              # Fig. 3 (mixed, partial)
  python -m launch.figures --figure=composition --out=runs/figures          # App. A.1 (Kitchen partial)

Options: `--tasks=a,b` (MetaWorld: `--tasks=paper` for the paper's ten), `--seeds=0,1,2`,
`--domain=kitchen` (ablations and subset on Kitchen, as in the paper), `--preset=paper` (the paper's
budget; the default `small` is the CPU preset), `--report_only` (draw from what is on disk, train
nothing), `--override=agent.horizon=3` (repeatable; passed to every run as --config.<...>).
Runs resume: a figure can be built across sessions. Writes `<out>/<figure>.png` and `.json`; the
runs are in `<out>/runs/` (moto_jax/analysis/figures.py).
"""

import os

from absl import app, flags

_FIGURE = flags.DEFINE_string(
  'figure', None, 'metaworld | kitchen | ablations | subset | bound | composition', required=True
)
_OUT = flags.DEFINE_string('out', 'runs/figures', 'Output folder (figures, and runs under runs/).')
_DOMAIN = flags.DEFINE_string('domain', None, "metaworld | kitchen (default: the figure's own)")
_PRESET = flags.DEFINE_string('preset', 'small', 'paper | small | long | debug')
_TASKS = flags.DEFINE_list('tasks', [], "Tasks (default: the figure's); MetaWorld's 'paper' names its ten.")
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds.')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False, 'Draw from the runs on disk; train nothing.')
_OVERRIDE = flags.DEFINE_multi_string('override', [], 'FIELD=VALUE passed to every run as --config.FIELD=VALUE.')


def get_config(domain: str, task: str, preset: str):
  import importlib

  return importlib.import_module(f'configs.{domain}').get_config(f'{task},{preset}')


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  from moto_jax.analysis import figures

  tasks = list(_TASKS.value)
  if tasks == ['paper']:
    from moto_jax.suites.metaworld import PAPER_TASKS

    tasks = list(PAPER_TASKS)
  result = figures.make_figure(
    _FIGURE.value,
    _OUT.value,
    domain=_DOMAIN.value,
    preset=_PRESET.value,
    tasks=tasks,
    seeds=[int(s) for s in _SEEDS.value],
    train=not _REPORT_ONLY.value,
    extra=tuple(f'--config.{o}' for o in _OVERRIDE.value),
    get_config=get_config,
  )
  print(f'Figure: {result["png"]}\nNumbers: {os.path.splitext(result["png"])[0]}.json')


if __name__ == '__main__':
  app.run(main)
