r"""The README's results and docs/RESULTS.md, regenerated from the records in `results/`.

  python -m benchmarks.report            # rewrite README.md's generated blocks, docs/RESULTS.md, docs/results_*.png
  python -m benchmarks.report --check    # exit 1 if README.md or docs/RESULTS.md is not what the records give

Records: `results/learning.jsonl` (one line per finished run, written by `benchmarks.learning`) and
`results/speed.jsonl` (one line per measured update, written by `benchmarks.train_step`); reading them
and judging staleness: `benchmarks/records.py`. Stale rows stay in the table, marked, until re-run.

The README holds blocks between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` lines:
`quickstart` (the Quickstart's `Done:` line and time), `learning` (the table), `final` (final
checkpoints on many start states, `results/final_eval.jsonl` from `benchmarks.final_eval`: medians
over seeds; docs/RESULTS.md has every seed with its interval), `speed`,
`convert` (from `results/convert.jsonl`, written by `benchmarks.convert_speed --record`). The
README's tables and figure show the paper's arms (`PAPER_ARMS`); docs/RESULTS.md, generated whole,
shows every arm.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from benchmarks.records import (
  PAPER_ARMS,
  RESULTS,
  ROOT,
  arm_key,
  fmt,
  median,
  paper_arms,
  read_jsonl,
  stale_reason,
  table_key,
)
from moto_jax import provenance, testing

README = os.path.join(ROOT, 'README.md')
RESULTS_PAGE = os.path.join(ROOT, 'docs', 'RESULTS.md')
QUICKSTART = dict(domain='metaworld', preset='small', task='drawer-open', arm='moto', seed=0)


def arm_flags(records: list[dict]) -> dict[str, list[str]]:
  """Each arm's overrides of the preset (those of every record of the arm), e.g. {'bc':
  ['agent.mode=bc']}. `data.dir` (where the run read a dataset generated beforehand, a path of that
  machine) is not a difference between arms and is left out."""
  arms = {}
  for r in records:
    flags = [o.removeprefix('--config.') for o in r.get('overrides') or [] if not o.startswith('--config.data.dir=')]
    arms[r['arm']] = flags if r['arm'] not in arms else [f for f in arms[r['arm']] if f in flags]
  return arms


def _flags_text(flags: list[str]) -> str:
  return ' '.join(f'`{f}`' for f in flags) if flags else 'none'


def arm_legend(records: list[dict]) -> str:
  """Each arm with its overrides, e.g. '`bc`: `agent.mode=bc`'; 'none' for the preset as it is."""
  arms = arm_flags(records)
  return '; '.join(f'`{arm}`: {_flags_text(arms[arm])}' for arm in sorted(arms, key=arm_key))


def _group_header(domain: str, preset: str, rs: list[dict]) -> str:
  machines = sorted({provenance.describe_machine(r.get('machine') or {}) for r in rs})
  seeds = sorted({r['seed'] for r in rs})
  steps = ', '.join(f'{s:,}' for s in sorted({r['env_steps'] for r in rs}))
  return (
    f'**{domain}, `{preset}`**, {steps} env steps online (seeds {", ".join(map(str, seeds))}; {"; ".join(machines)})'
  )


def _runs_footnote(records: list[dict], what: str) -> str:
  episodes = sorted({r['eval_episodes'] for r in records})
  return (
    f'Success rate over {", ".join(map(str, episodes))} evaluation episodes, {what}'
    + (
      '; Kitchen adds the target tasks completed per episode (of 4)' if any('final_tasks' in r for r in records) else ''
    )
    + '. Wall minutes (median over the row) include compiling, and generating the dataset where the run '
    'generated it'
    + (
      ' (runs given `data.dir` read one that `launch.collect` generated beforehand from the same settings)'
      if any(o.startswith('--config.data.dir=') for r in records for o in r.get('overrides') or [])
      else ''
    )
    + '.'
  )


def learning_table(records: list[dict], golden: str | None) -> str:
  """One table per domain and preset: a row per task, a column per arm (the arms side by side on
  the same seeds and data). A cell is `offline end -> final` for one seed, else the finals by seed
  and their median."""
  if not records:
    return '_No learning records yet: `python -m benchmarks.learning` writes them._'
  out, notes = [], set()
  for domain, preset in sorted({(r['domain'], r['preset']) for r in records}, key=table_key):
    rs = [r for r in records if (r['domain'], r['preset']) == (domain, preset)]
    arms = sorted({r['arm'] for r in rs}, key=arm_key)
    out += [_group_header(domain, preset, rs), '']
    out.append('| task | ' + ' | '.join(arms) + ' | wall min |')
    out.append('|---|' + '---|' * (len(arms) + 1))
    for task in sorted({r['task'] for r in rs}):
      cells = []
      for arm in arms:
        cell = sorted((r for r in rs if (r['task'], r['arm']) == (task, arm)), key=lambda r: r['seed'])
        reasons = sorted({stale_reason(r, golden) for r in cell} - {''})
        notes.update(reasons)
        if not cell:
          text = '-'
        elif len(cell) == 1:
          text = f'{fmt(cell[0]["offline_success"])} → **{fmt(cell[0]["final_success"])}**'
          if 'final_tasks' in cell[0]:
            text += f' ({fmt(cell[0]["offline_tasks"])} → {fmt(cell[0]["final_tasks"])} tasks)'
        else:
          finals = ' / '.join(fmt(r['final_success']) for r in cell)
          text = f'{finals} (median **{fmt(median([r["final_success"] for r in cell]))}**)'
          if all('final_tasks' in r for r in cell):
            text += f' ({fmt(median([r["final_tasks"] for r in cell]))} tasks)'
        cells.append(text + (f' (stale: {", ".join(reasons)})' if reasons else ''))
      wall = median([r['wall_minutes'] for r in rs if r['task'] == task])
      out.append(f'| {task} | ' + ' | '.join(cells) + f' | {fmt(wall, ".1f")} |')
    out.append('')
  out.append(_runs_footnote(records, 'at the offline end → after fine-tuning'))
  out.append('')
  out.append('Arms (their overrides of the preset): ' + arm_legend(records) + '.')
  if notes:
    out.append(
      'Stale cells ran with code or a config that learns differently from now; re-run them with the command '
      'in their record.'
    )
  return '\n'.join(out)


def variants_table(records: list[dict], finals: list[dict], golden: str | None) -> str:
  """The arms beyond the paper's, one row per task and arm (too many to stand side by side): its
  flags, the seeds, the offline end and final success of each seed, their median, the final
  checkpoints on new start states where evaluated, and the wall minutes. Final checkpoints of an arm
  with no learning record on this page follow in a table of their own."""
  if not records:
    return '_No variants on record._'
  out, stale = [], False
  for domain, preset in sorted({(r['domain'], r['preset']) for r in records}, key=table_key):
    rs = [r for r in records if (r['domain'], r['preset']) == (domain, preset)]
    out += [
      _group_header(domain, preset, rs),
      '',
      '| task | arm | flags | seeds | offline end → final | median | final checkpoint, new start states | wall min |',
      '|---|---|---|---|---|---|---|---|',
    ]
    for task, arm in sorted({(r['task'], r['arm']) for r in rs}):
      cell = sorted((r for r in rs if (r['task'], r['arm']) == (task, arm)), key=lambda r: r['seed'])
      runs = (
        ' / '.join(fmt(r['offline_success']) for r in cell) + ' → ' + ' / '.join(fmt(r['final_success']) for r in cell)
      )
      if all('final_tasks' in r for r in cell):
        tasks = (
          ' / '.join(fmt(r['offline_tasks']) for r in cell) + ' → ' + ' / '.join(fmt(r['final_tasks']) for r in cell)
        )
        runs += f' ({tasks} tasks)'
      reasons = sorted({stale_reason(r, golden) for r in cell} - {''})
      if reasons:
        stale = True
        runs += f' (stale: {", ".join(reasons)})'
      evals = sorted(
        (f for f in finals if (f['domain'], f['preset'], f['task'], f['arm']) == (domain, preset, task, arm)),
        key=lambda f: f['seed'],
      )
      checkpoint = '; '.join(
        f'seed {f["seed"]}: **{fmt(f["success"])}** [{fmt(f["interval"][0])}, {fmt(f["interval"][1])}] of {f["episodes"]}'
        for f in evals
      )
      out.append(
        f'| {task} | `{arm}` | {_flags_text(arm_flags(cell)[arm])} | {", ".join(str(r["seed"]) for r in cell)} | '
        f'{runs} | **{fmt(median([r["final_success"] for r in cell]))}** | {checkpoint or "-"} | '
        f'{fmt(median([r["wall_minutes"] for r in cell]), ".1f")} |'
      )
    out.append('')
  out.append(
    _runs_footnote(records, 'at the offline end → after fine-tuning, seed by seed, and the median of the finals')
    + ' Final checkpoints on new start states: the success rate and its 95 % (Wilson) interval '
    '(`python -m benchmarks.final_eval`).'
  )
  if stale:
    out.append(
      'Stale runs ran with code or a config that learns differently from now; re-run them with the command in their record.'
    )
  keys = {(r['domain'], r['preset'], r['task'], r['arm']) for r in records}
  unmatched = [f for f in finals if (f['domain'], f['preset'], f['task'], f['arm']) not in keys]
  if unmatched:
    out += ['', 'Final checkpoints of arms with no learning record here:', '', final_table(unmatched)]
  return '\n'.join(out)


def _allocator(status: str | None) -> str:
  status = status or ''
  return (
    'jemalloc' if 'jemalloc' in status else ('glibc, huge pages' if 'huge' in status else ('glibc' if status else '-'))
  )


def speed_table(records: list[dict]) -> str:
  if not records:
    return '_No speed records yet: `python -m benchmarks.train_step` writes them._'
  lines = [
    '| preset | batch | compile s | s / update | updates / s | GFLOP/s | of roofline | machine, allocator |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for r in sorted(records, key=lambda r: (r['preset'] != 'small', r['preset'], r['step'])):
    lines.append(
      f'| {r["preset"]}{"" if r["step"] == "full" else " (" + r["step"] + ")"} | {r["batch"]} | {r["compile_s"]:.1f} | '
      f'{r["step_s"]:.3f} | {1 / r["step_s"]:.2f} | {r["gflops"]:.0f} | {fmt(r.get("roofline_share"), ".0%")} | '
      f'{provenance.describe_machine(r.get("machine") or {})}, {_allocator(r.get("allocator"))} |'
    )
  return '\n'.join(lines)


def final_table(records: list[dict]) -> str:
  """Final checkpoints on many start states (`benchmarks.final_eval`): one table per domain, preset
  and episode count, a row per task and seed, a column per arm; a cell is the success rate and its
  95 % interval. A task with several seeds gets a row of each arm's median over its seeds."""
  if not records:
    return '_No final-checkpoint evaluations yet: `python -m benchmarks.final_eval` writes them._'
  out = []

  for domain, preset, n in sorted({(r['domain'], r['preset'], r['episodes']) for r in records}, key=table_key):
    rs = [r for r in records if (r['domain'], r['preset'], r['episodes']) == (domain, preset, n)]
    arms = sorted({r['arm'] for r in rs}, key=arm_key)
    out += [
      f'**{domain}, `{preset}`**: final checkpoints on the same {n} new start states each',
      '',
      '| task | seed | ' + ' | '.join(arms) + ' |',
      '|---|---|' + '---|' * len(arms),
    ]
    for task, seed in sorted({(r['task'], r['seed']) for r in rs}):
      cells = []
      for arm in arms:
        match = [r for r in rs if (r['task'], r['seed'], r['arm']) == (task, seed, arm)]
        cells.append(
          f'**{fmt(match[0]["success"])}** [{fmt(match[0]["interval"][0])}, {fmt(match[0]["interval"][1])}]'
          if match
          else '-'
        )
      out.append(f'| {task} | {seed} | ' + ' | '.join(cells) + ' |')
      seeds = sorted({r['seed'] for r in rs if r['task'] == task})
      if len(seeds) > 1 and seed == seeds[-1]:
        medians = []
        for arm in arms:
          rates = [r['success'] for r in rs if (r['task'], r['arm']) == (task, arm)]
          medians.append(f'**{fmt(median(rates))}** (of {len(rates)})' if rates else '-')
        out.append(f'| {task} | median | ' + ' | '.join(medians) + ' |')
    out.append('')
  out.append('Success rate and its 95 % (Wilson) interval; `python -m benchmarks.final_eval` (command in each record).')
  return '\n'.join(out)


def final_summary(records: list[dict]) -> str:
  """The README's short form of `final_table`: a row per domain, preset and task, a column per arm;
  a cell is the arm's median rate over its seeds (their number beside it). The per-seed table with
  intervals is on docs/RESULTS.md."""
  if not records:
    return '_No final-checkpoint evaluations yet: `python -m benchmarks.final_eval` writes them._'
  arms = sorted({r['arm'] for r in records}, key=arm_key)
  out = ['| task | preset | start states | ' + ' | '.join(arms) + ' |', '|---|---|---|' + '---|' * len(arms)]
  for domain, preset, n in sorted({(r['domain'], r['preset'], r['episodes']) for r in records}, key=table_key):
    rs = [r for r in records if (r['domain'], r['preset'], r['episodes']) == (domain, preset, n)]
    for task in sorted({r['task'] for r in rs}):
      cells = []
      for arm in arms:
        rates = [r['success'] for r in rs if (r['task'], r['arm']) == (task, arm)]
        seeds = f' ({len(rates)} seeds)' if len(rates) > 1 else ' (1 seed)'
        cells.append(f'**{fmt(median(rates))}**{seeds}' if rates else '-')
      name = task if domain == 'metaworld' else f'{domain} {task}'
      out.append(f'| {name} | `{preset}` | {n} | ' + ' | '.join(cells) + ' |')
  out += [
    '',
    "Median over seeds of the final checkpoints' success rates on the same new start states "
    '(`python -m benchmarks.final_eval`); each seed with its 95 % interval: '
    '[`docs/RESULTS.md`](docs/RESULTS.md#the-papers-arms-final-checkpoints-on-new-start-states).',
  ]
  return '\n'.join(out)


def convert_line(records: list[dict]) -> str:
  if not records:
    return '_No conversion speed records yet: `python -m benchmarks.convert_speed --record=results/convert.jsonl`._'
  parts = [
    f"{r['frames']:,} frames ({r['episodes']} mp4s): {r['convert_fps']:,.0f} frames/s against PyAV's raw decode "
    f'{r["pyav_fps"]:,.0f} ({r["ratio"]:.2f}x)'
    for r in records[-2:]
  ]
  machine = provenance.describe_machine(records[-1].get('machine') or {})
  return f'Conversion speed (`python -m benchmarks.convert_speed`, {machine}): ' + '; '.join(parts) + '.'


def done_line(r: dict) -> str:
  """The line the run printed at its end, with the Quickstart's workdir in it."""
  if r.get('done_line'):
    return re.sub(r'Learning curve: .*$', 'Learning curve: runs/drawer-open/learning_curve.png', r['done_line'])
  return (
    f'Done: {r["domain"]}/{r["task"]} seed {r["seed"]}, {r["wall_minutes"]:.1f} min wall clock: success rate '
    f'{fmt(r["final_success"])} over {r["eval_episodes"]} evaluation episodes after {r["grad_steps"]} gradient '
    f'steps and {r["env_steps"]} env steps (offline end {fmt(r["offline_success"])}).'
  )


def quickstart_block(records: list[dict], golden: str | None) -> str:
  match = [r for r in records if all(r.get(k) == v for k, v in QUICKSTART.items()) and not r.get('overrides')]
  if not match:
    return '_No record of the Quickstart run yet._'
  r = match[0]
  minutes = r.get('minutes') or {}
  stale = stale_reason(r, golden)
  return (
    '```\n' + done_line(r) + '\n```\n\n'
    f'It took {r["wall_minutes"]:.1f} minutes on {provenance.describe_machine(r.get("machine") or {})}: '
    f'{minutes.get("data", 0):.1f} generating the dataset, {minutes.get("compile", 0):.1f} compiling the '
    f'update, {minutes.get("evaluation", 0):.1f} evaluating, {minutes.get("training", 0):.1f} training'
    + (f' (this record is stale: {stale})' if stale else '')
    + '.'
  )


def render(readme: str, blocks: dict[str, str]) -> str:
  for name, body in blocks.items():
    pattern = re.compile(rf'(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)', re.S)
    if not pattern.search(readme):
      raise SystemExit(f'README.md has no <!-- generated:{name} --> ... <!-- /generated:{name} --> block')
    readme = pattern.sub(lambda m: m.group(1) + body.rstrip() + '\n' + m.group(2), readme)
  return readme


def other_arms_line(records: list[dict]) -> str:
  others = sorted({r['arm'] for r in records} - set(PAPER_ARMS))
  if not others:
    return ''
  return (
    f'\n\n{len(others)} other arms (changes to the balance, the critics or the data, each with its flags) are in '
    '[`docs/RESULTS.md`](docs/RESULTS.md), with every record.'
  )


def blocks(results: str = RESULTS) -> dict[str, str]:
  """The README's generated blocks: the paper's arms only."""
  learning = read_jsonl(os.path.join(results, 'learning.jsonl'))
  finals = read_jsonl(os.path.join(results, 'final_eval.jsonl'))
  golden = testing.golden_hash()
  return dict(
    quickstart=quickstart_block(learning, golden),
    learning=learning_table(paper_arms(learning), golden) + other_arms_line(learning + finals),
    speed=speed_table(read_jsonl(os.path.join(results, 'speed.jsonl'))),
    convert=convert_line(read_jsonl(os.path.join(results, 'convert.jsonl'))),
    final=final_summary(paper_arms(finals)),
  )


def results_page(results: str = RESULTS) -> str:
  """docs/RESULTS.md, whole: every arm of every learning record and final-checkpoint evaluation."""
  learning = read_jsonl(os.path.join(results, 'learning.jsonl'))
  finals = read_jsonl(os.path.join(results, 'final_eval.jsonl'))
  golden = testing.golden_hash()
  others = [r for r in learning if r['arm'] not in PAPER_ARMS]
  return '\n'.join(
    [
      '# Results: every arm',
      '',
      '<!-- Generated by `python -m benchmarks.report` from results/; edits here are overwritten. -->',
      '',
      'Every learning run and final-checkpoint evaluation on record, the variants tried beside the',
      "paper's arms (the README shows those only). What each variant is for and what it did:",
      '[`BUILD_NOTES.md`](../BUILD_NOTES.md), Section 6. A record carries its commit, machine and command.',
      '',
      '## Learning runs',
      '',
      "### The paper's arms",
      '',
      learning_table(paper_arms(learning), golden),
      '',
      '### Variants',
      '',
      variants_table(others, [f for f in finals if f['arm'] not in PAPER_ARMS], golden),
      '',
      '![learning curves, every arm](results_all.png)',
      '',
      "## The paper's arms: final checkpoints on new start states",
      '',
      final_table(paper_arms(finals)),
      '',
    ]
  )


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--check', action='store_true', help='exit 1 if README.md differs from the records')
  p.add_argument('--readme', default=README)
  p.add_argument('--page', default=RESULTS_PAGE, help='the page of every arm')
  p.add_argument('--figure', default=os.path.join(ROOT, 'docs', 'results_learning.png'))
  args = p.parse_args(argv)
  with open(args.readme) as f:
    old = f.read()
  pages = {args.readme: render(old, blocks()), args.page: results_page()}
  if args.check:
    for path, new in pages.items():
      current = open(path).read() if os.path.exists(path) else None
      if new != current:
        sys.exit(f'{path} is out of date with results/: run python -m benchmarks.report')
    print(f'{" and ".join(pages)} match results/')
    return
  for path, new in pages.items():
    with open(path, 'w') as f:
      f.write(new)
  from benchmarks import report_figure  # (matplotlib, only when writing)

  learning = read_jsonl(os.path.join(RESULTS, 'learning.jsonl'))
  figures = {args.figure: paper_arms(learning), os.path.join(os.path.dirname(args.page), 'results_all.png'): learning}
  for path, records in figures.items():
    if records:
      report_figure.curves_figure(records, path)
  print(f'Wrote {", ".join(pages)}' + (f' and {", ".join(p for p, r in figures.items() if r)}' if learning else ''))


if __name__ == '__main__':
  main()
