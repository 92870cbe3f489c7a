"""Results as data: learning records, staleness, and the README's generated blocks."""

import json

import pytest

from benchmarks import learning, records, report, report_figure
from configs import metaworld
from moto_jax import testing
from moto_jax.training import config_check


def _record(**changes):
  config = metaworld.get_config('door-open,small').unlock()
  config.seed = changes.get('seed', 0)
  r = dict(
    domain='metaworld',
    task='door-open',
    preset='small',
    arm='moto',
    overrides=[],
    seed=0,
    commit='0' * 40,
    dirty=False,
    golden=testing.golden_hash(),
    config_hash=config_check.learning_hash(config),
    env_steps=1000,
    grad_steps=700,
    offline_success=0.5,
    min_online_success=0.6,
    final_success=0.75,
    final_return=100.0,
    eval_episodes=20,
    wall_minutes=8.0,
    minutes={},
    machine={'cpu': 'X', 'cores': 2},
    command='python -m launch.main ...',
    curve=[[0, 0.5], [1000, 0.75]],
    done_line=None,
  )
  r.update(changes)
  return r


def test_readme_matches_the_records():
  """README.md's generated blocks and docs/RESULTS.md are what `python -m benchmarks.report` makes of
  results/."""
  with open(report.README) as f:
    readme = f.read()
  assert report.render(readme, report.blocks()) == readme, 'run python -m benchmarks.report'
  with open(report.RESULTS_PAGE) as f:
    assert f.read() == report.results_page(), 'run python -m benchmarks.report'


def test_readme_shows_the_papers_arms_and_the_page_every_arm(tmp_path):
  rows = [_record(), _record(arm='bc', final_success=0.6), _record(arm='nounc'), _record(arm='share0.1')]
  rows.append(_record(task='drawer-open', arm='share0.3'))  # a task with no paper arm: no README row
  with open(tmp_path / 'learning.jsonl', 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)
  learning_block = report.blocks(str(tmp_path))['learning']
  assert '| task | moto | bc | nounc | wall min |' in learning_block
  assert 'share' not in learning_block.split('\n\n2 other arms')[0] and 'drawer-open' not in learning_block
  assert learning_block.endswith(
    '2 other arms (changes to the balance, the critics or the data, each with its '
    'flags) are in [`docs/RESULTS.md`](docs/RESULTS.md), with every record.'
  )
  with open(tmp_path / 'final_eval.jsonl', 'w') as f:
    final = dict(domain='metaworld', preset='small', task='door-open', arm='share0.1', seed=0, episodes=100)
    f.write(json.dumps(dict(final, success=0.62, interval=[0.52, 0.71])) + '\n')
  page = report.results_page(str(tmp_path))
  assert '| task | moto | bc | nounc | wall min |' in page  # the paper's arms side by side
  variants = page.split('### Variants')[1]  # the others one row each, with their flags and evaluations
  assert '| task | arm | flags | seeds | offline end → final | median |' in variants
  assert (
    '| door-open | `share0.1` | none | 0 | 0.50 → 0.75 | **0.75** | seed 0: **0.62** [0.52, 0.71] of 100 | 8.0 |'
    in variants
  )
  assert '| drawer-open | `share0.3` | none | 0 | 0.50 → 0.75 (stale: ' in variants  # the hash is door-open's


def test_variants_show_seeds_flags_target_tasks_and_lone_final_checkpoints(tmp_path):
  seeds = [
    _record(arm='share0.3', seed=s, offline_success=o, final_success=f, overrides=['--config.agent.value_share=0.3'])
    for s, o, f in ((0, 0.1, 0.2), (1, 0.3, 0.4), (2, 0.0, 0.9))
  ]
  kitchen = _record(domain='kitchen', task='mixed', arm='whole', offline_success=0.0, final_success=0.0)
  kitchen.update(offline_tasks=0.95, final_tasks=1.25, overrides=['--config.data.bc_segments=False'])
  for r in seeds + [kitchen]:
    r['config_hash'] = records.current_config_hash(r)  # as recorded by a run of today's code
  lone = dict(domain='metaworld', preset='small', task='door-open', arm='gone', seed=0, episodes=100)
  page = report.variants_table(seeds + [kitchen], [dict(lone, success=0.3, interval=[0.2, 0.4])], testing.golden_hash())
  assert 'stale' not in page
  flags = '`agent.value_share=0.3`'
  assert (
    f'| door-open | `share0.3` | {flags} | 0, 1, 2 | 0.10 / 0.30 / 0.00 → 0.20 / 0.40 / 0.90 | **0.40** | - |' in page
  )
  assert '| mixed | `whole` | `data.bc_segments=False` | 0 | 0.00 → 0.00 (0.95 → 1.25 tasks) | **0.00** |' in page
  assert 'Kitchen adds the target tasks completed per episode (of 4)' in page
  lone_table = page.split('Final checkpoints of arms with no learning record here:')[1]
  assert '| task | seed | gone |' in lone_table and '**0.30** [0.20, 0.40]' in lone_table


def test_staleness_follows_the_golden_file_and_the_config():
  golden = testing.golden_hash()
  assert records.stale_reason(_record(), golden) == ''
  assert records.stale_reason(_record(golden='x' * 12), golden) == 'update changed'
  assert records.stale_reason(_record(config_hash='y' * 12), golden) == 'config changed'
  # Overrides are part of the config: a record made with one is current only with it.
  bc = metaworld.get_config('door-open,small').unlock()
  bc.agent.bc_scale, bc.seed = 1.0, 0
  over = _record(arm='bc1', overrides=['--config.agent.bc_scale=1.0'], config_hash=config_check.learning_hash(bc))
  assert records.stale_reason(over, golden) == ''
  assert records.stale_reason(dict(over, overrides=[]), golden) == 'config changed'
  # Fields that do not decide learning leave the hash alone.
  moved = metaworld.get_config('door-open,small').unlock()
  moved.data.cache_dir, moved.train.log_every, moved.seed = '/elsewhere', 7, 0
  assert config_check.learning_hash(moved) == _record()['config_hash']


def test_table_puts_arms_side_by_side_marks_stale_cells_and_takes_medians():
  rows = [_record(seed=s, final_success=v) for s, v in ((0, 0.75), (1, 0.95), (2, 0.85))]
  rows.append(_record(arm='bc', final_success=0.6))
  rows.append(_record(task='drawer-open', golden='x' * 12))
  table = report.learning_table(rows, testing.golden_hash())
  assert '| task | moto | bc | wall min |' in table
  door = next(line for line in table.splitlines() if line.startswith('| door-open |'))
  assert '0.75 / 0.95 / 0.85 (median **0.85**)' in door and '0.50 → **0.60**' in door and 'stale' not in door
  drawer = next(line for line in table.splitlines() if line.startswith('| drawer-open |'))
  assert 'stale: update changed' in drawer and drawer.endswith('| - | 8.0 |')
  assert '\nArms (their overrides of the preset): `moto`: none; `bc`: none.\n' in table
  rows.append(_record(arm='q', overrides=['--config.agent.bc_filter=q', '--config.seed=1'], seed=1))
  rows.append(_record(arm='q', overrides=['--config.agent.bc_filter=q']))
  assert report.arm_legend(rows) == '`moto`: none; `bc`: none; `q`: `agent.bc_filter=q`'


def test_records_replace_by_key(tmp_path):
  path = str(tmp_path / 'learning.jsonl')
  learning.write_record(_record(final_success=0.1), path)
  learning.write_record(_record(seed=1), path)
  learning.write_record(_record(final_success=0.9), path)  # same key as the first: replaces it
  records = learning.read_records(path)
  assert [(r['seed'], r['final_success']) for r in records] == [(0, 0.9), (1, 0.75)]
  assert all(json.loads(line) for line in open(path))


def test_render_needs_the_blocks():
  with pytest.raises(SystemExit, match='generated:learning'):
    report.render('no blocks here', {'learning': 'x'})
  text = '<!-- generated:speed -->\nold\n<!-- /generated:speed -->\n'
  assert report.render(text, {'speed': 'new'}) == '<!-- generated:speed -->\nnew\n<!-- /generated:speed -->\n'


def _summary(**fields) -> dict:
  """A finished run's summary.json, with `fields` changed."""
  summary = dict(
    phase='done',
    env_steps=40,
    grad_steps=10,
    offline_success_rate=0.0,
    min_online_success_rate=0.0,
    final_success_rate=0.0,
    final_return=3.0,
    eval_episodes=20,
    wall_minutes=1.0,
  )
  return {**summary, **fields}


def test_arms_look_distinct_in_the_curves():
  styles = [report_figure.arm_color(n) for n in range(40)]
  assert len({(tuple(c), ls) for c, ls in styles}) == 40
  assert len({tuple(c) for c, _ in styles[:20]}) == 20  # the first 20 differ by colour alone


def test_record_of_a_finished_run(tmp_path):
  """benchmarks.learning's record of a finished run's workdir carries the provenance fields."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  config = metaworld.get_config('drawer-open,debug')
  prov = {
    'commit': 'a' * 40,
    'dirty': False,
    'golden': 'g' * 12,
    'versions': {'jax': '1'},
    'machine': {'cpu': 'X', 'cores': 2},
    'date': '2026-01-02',
  }
  summary = _summary(
    task='drawer-open',
    preset='debug',
    seed=0,
    grad_steps=12,
    final_success_rate=1.0,
    eval_episodes=1,
    wall_minutes=1.5,
    seconds={'data': 6.0, 'compile': 30.0, 'evaluation': 9.0, 'training': 45.0},
    provenance=prov,
  )
  (workdir / 'summary.json').write_text(json.dumps(summary))
  config_check.record(config, str(workdir))
  (workdir / 'metrics.jsonl').write_text(
    json.dumps({'phase': 'eval', 'step': 0, 'env_steps': 0, 'eval/success_rate': 0.0}) + '\n'
  )
  with open(str(workdir) + '.log', 'w') as f:
    f.write('noise\nDone: metaworld/drawer-open seed 0, 1.5 min wall clock ...\n')
  r = learning.make_record(str(workdir), 'moto', [], ['python', '-m', 'launch.main'])
  assert r['commit'] == 'a' * 40 and r['dirty'] is False and r['machine'] == prov['machine']
  # The golden hash and date of the session that trained, not of the checkout that writes the record.
  assert r['golden'] == 'g' * 12 and r['date'] == '2026-01-02' and r['commits'] == ['a' * 40]
  assert r['config_hash'] == config_check.learning_hash(config)
  assert r['minutes'] == {'data': 0.1, 'compile': 0.5, 'evaluation': 0.15, 'training': 0.75}
  assert r['curve'] == [[0, 0.0]] and r['done_line'].startswith('Done: metaworld/drawer-open')


def test_final_evaluations_table_and_interval():
  from benchmarks import final_eval

  lo, hi = final_eval.wilson(50, 100)
  assert abs((lo + hi) / 2 - 0.5) < 1e-9 and 0.09 < hi - 0.5 < 0.1  # +-0.098 at p = 0.5, n = 100
  assert final_eval.wilson(0, 20)[0] == 0.0 and 0.15 < final_eval.wilson(0, 20)[1] < 0.17
  row = dict(domain='metaworld', preset='long', task='window-open', seed=0, episodes=100)
  records = [
    dict(row, arm='bc', success=0.4, interval=[0.31, 0.5]),
    dict(row, arm='moto', success=0.55, interval=[0.45, 0.64]),
  ]
  table = report.final_table(records)
  assert '| task | seed | moto | bc |' in table
  assert '| window-open | 0 | **0.55** [0.45, 0.64] | **0.40** [0.31, 0.50] |' in table
  assert 'median' not in table  # one seed
  more = [dict(r, seed=s, success=r['success'] + 0.1 * s) for r in records for s in (1, 2)]
  table = report.final_table(records + more[:3])  # bc at seeds 1 and 2, moto at seed 1
  rows = table.split('\n')
  assert (
    rows.index('| window-open | median | **0.60** (of 2) | **0.50** (of 3) |')
    == rows.index('| window-open | 2 | - | **0.60** [0.31, 0.50] |') + 1
  )


def test_final_summary_gives_each_arms_median_over_its_seeds():
  """The README's short form: a row per preset and task, each arm's median over its seeds and their number."""
  row = dict(domain='metaworld', task='coffee-push', episodes=100)
  records = [dict(row, preset='long', arm='moto', seed=s, success=v) for s, v in ((0, 0.29), (1, 0.54), (2, 0.47))]
  records += [dict(row, preset='long', arm='bc', seed=0, success=0.36)]
  records += [dict(row, preset='small', arm='bc', seed=s, success=v) for s, v in ((0, 0.2), (1, 0.1))]
  records += [dict(row, domain='kitchen', task='mixed', preset='small', arm='moto', seed=0, success=0.05)]
  rows = report.final_summary(records).split('\n')
  assert rows[0] == '| task | preset | start states | moto | bc |'
  # MetaWorld before Kitchen, small before long; medians 0.47 (of 3) and 0.15 (of 2).
  assert rows[2:5] == [
    '| coffee-push | `small` | 100 | - | **0.15** (2 seeds) |',
    '| coffee-push | `long` | 100 | **0.47** (3 seeds) | **0.36** (1 seed) |',
    '| kitchen mixed | `small` | 100 | **0.05** (1 seed) | - |',
  ]
  assert 'docs/RESULTS.md' in rows[-1]


def test_kitchen_records_carry_target_tasks_per_episode(tmp_path):
  """A Kitchen run's record holds its target tasks per evaluation episode; the table and the curves show them."""
  evals = [
    {'env_steps': 0, 'eval/success_rate': 0.0, 'eval/tasks_completed': 0.5},
    {'env_steps': 560, 'eval/success_rate': 0.0, 'eval/tasks_completed': 1.25},
  ]
  fields = learning.tasks_fields(evals)
  assert fields == dict(offline_tasks=0.5, final_tasks=1.25, tasks_curve=[[0, 0.5], [560, 1.25]])
  assert learning.tasks_fields([{'env_steps': 0, 'eval/success_rate': 1.0}]) == {}  # MetaWorld: none
  kitchen = _record(
    domain='kitchen',
    task='mixed',
    offline_success=0.0,
    final_success=0.05,
    overrides=['--config.data.dir=/d'],
    **fields,
  )
  table = report.learning_table([_record(), kitchen], testing.golden_hash())
  row = next(line for line in table.splitlines() if line.startswith('| mixed |'))
  assert '0.00 → **0.05** (0.50 → 1.25 tasks)' in row
  assert 'Kitchen adds the target tasks completed per episode (of 4)' in table
  assert 'runs given `data.dir` read one that `launch.collect` generated beforehand' in table
  assert '/d' not in report.arm_legend([kitchen])  # a path of the machine, not a difference between arms
  seeds = [kitchen, {**kitchen, 'seed': 1, 'final_tasks': 2.0}, {**kitchen, 'seed': 2, 'final_tasks': 1.5}]
  row = next(line for line in report.learning_table(seeds, None).splitlines() if line.startswith('| mixed |'))
  assert '(median **0.05**) (1.50 tasks)' in row  # the median of the target tasks beside that of success
  path = tmp_path / 'curves.png'
  report_figure.curves_figure([_record(), kitchen], str(path))
  assert path.stat().st_size > 1000


def test_median_curve_of_seeds_evaluated_at_the_same_steps():
  a, b, c = [(0, 0.2), (1000, 0.8)], [(0, 0.6), (1000, 0.4)], [(0, 0.4), (1000, 1.0)]
  assert report_figure.median_curve([a, b, c]) == [(0, 0.4), (1000, 0.8)]
  two = report_figure.median_curve([a, b])  # an even count: the mean of the middle two
  assert [x for x, _ in two] == [0, 1000] and [y for _, y in two] == pytest.approx([0.4, 0.6])
  assert report_figure.median_curve([a]) is None  # one seed: its own curve
  assert report_figure.median_curve([a, [(0, 0.1), (500, 0.2)]]) is None  # different evaluation steps
  assert report_figure.median_curve([a, []]) is None


def test_done_line_names_target_tasks_where_a_run_has_them():
  from configs import kitchen
  from moto_jax.training import run_record

  config = kitchen.get_config('mixed,debug')
  summary = _summary(wall_minutes=3.0, final_success_rate=0.1, final_tasks_completed=1.5, eval_episodes=20)
  line = run_record.done_line(config, summary, [], '/w', 60.0)
  assert line.startswith('Done: kitchen/mixed seed 0, 3.0 min wall clock (this session 1.0): success rate 0.10')
  assert 'and 1.50 target tasks per episode over 20 evaluation episodes' in line and '(offline end 0.00)' in line
  assert run_record.done_line(config, {**summary, 'phase': 'online'}, [], '/w', 60.0) is None
  assert 'target tasks' not in run_record.done_line(config, {**summary, 'final_tasks_completed': None}, [], '/w', 1)
