"""`launch.figures` on the debug preset: it runs what a figure needs, resumes, and draws from disk."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from moto_jax.analysis import figures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _extra(tmp_path):
  return (f'--config.data.cache_dir={tmp_path / "cache"}',)


def _run_dir(tmp_path, variant):
  return figures.workdir(str(tmp_path), 'metaworld', 'debug', variant, 'drawer-open', 0, _extra(tmp_path))


def _figure(tmp_path, *args):
  cmd = [
    sys.executable,
    '-m',
    'launch.figures',
    f'--out={tmp_path}',
    '--preset=debug',
    f'--override=data.cache_dir={tmp_path / "cache"}',
    *args,
  ]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  return out.stdout


@pytest.mark.integration  # runs a whole debug job in a subprocess (~2 min): with the other whole jobs
def test_bound_figure_runs_its_run_then_other_figures_reuse_it(tmp_path):
  _figure(tmp_path, '--figure=bound')
  run_dir = _run_dir(tmp_path, 'full')
  assert '-debug-' in run_dir  # the override's hash names the runs' folder
  assert json.load(open(os.path.join(run_dir, 'summary.json')))['phase'] == 'done'
  b = json.load(open(tmp_path / 'bound.json'))
  evals = b['runs']['drawer-open/seed0']['evaluations']
  assert len(evals) == 5  # offline end + 4 online evaluations (debug: 40 env steps)
  assert all(np.isfinite(e['bound/bound']) and e['bound/estimate'] > 0 for e in evals)
  assert 0.0 <= b['runs']['drawer-open/seed0']['gap_within_bound'] <= 1.0
  assert os.path.getsize(tmp_path / 'bound.png') > 0
  # The data-size figure (2, 5, 10 episodes) at debug sizes (3 episodes): 5 and 10 are the full run.
  _figure(tmp_path, '--figure=subset', '--report_only')
  s = json.load(open(tmp_path / 'subset.json'))['tasks']['drawer-open']
  assert list(s) == ['2', '3']
  assert s['3']['seeds']['0']['finished'] and not s['2']['seeds']['0']['finished']
  # Report-only on runs that do not exist: the figure is drawn and says what is missing.
  _figure(tmp_path, '--figure=ablations', '--report_only')
  a = json.load(open(tmp_path / 'ablations.json'))['tasks']['drawer-open']
  assert a['full']['seeds']['0']['finished'] and a['full']['median_final_success'] is not None
  assert not a['no_bc']['seeds']['0']['finished'] and a['no_bc']['median_final_success'] is None
  assert not os.path.exists(_run_dir(tmp_path, 'no_bc'))
  # The composition figure under --report_only without its Kitchen run: drawn, and says so.
  _figure(tmp_path, '--figure=composition', '--report_only')
  c = json.load(open(tmp_path / 'composition.json'))
  assert c['finished'] is False and 'partial' in c['run']


def test_unknown_figure_and_wrong_composition_domain_are_named(tmp_path):
  with pytest.raises(ValueError, match="Unknown figure 'fig9'; one of: metaworld, kitchen"):
    figures.make_figure('fig9', str(tmp_path))
  with pytest.raises(ValueError, match="Kitchen 'partial' run"):
    figures.make_figure('composition', str(tmp_path), domain='metaworld', train=False)
