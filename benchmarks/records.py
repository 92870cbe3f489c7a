"""The records in `results/`: reading them, whether a learning record is stale, and the order of
arms, domains and presets in every table and figure (`benchmarks.report`, `benchmarks.report_figure`).

A learning record is **stale** when the code or config it ran with no longer learns the same way as
now: its update golden hash differs from `tests/golden/update_debug.json`'s, or its preset and
overrides now resolve to a config with other learning fields, or it ran from a tree with uncommitted
changes. (The golden file pins the `debug` update of mode `moto` with the paper's balance; a change
confined to other paths, to the environments or to evaluation is not seen by it.)
"""

from __future__ import annotations

import json
import os
import statistics

from moto_jax.training import config_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'results')
# The README shows the method, the cloning control and the paper's ablations (its Sec. 5.3); every
# other arm (the balances, critics and data variants tried) is on the generated docs/RESULTS.md.
PAPER_ARMS = ('moto', 'bc', 'nounc', 'nobc', 'dreamerv2')
ARM_ORDER = PAPER_ARMS


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def current_config_hash(record: dict) -> str | None:
  """The learning hash that the record's preset and overrides resolve to with today's configs."""
  import importlib

  try:
    module = importlib.import_module(f'configs.{record["domain"]}')
    config = module.get_config(f'{record["task"]},{record["preset"]}').unlock()
    for item in record.get('overrides', []):
      config_check.override(config, item[len('--config.') :])
    config.seed = record['seed']
  except (ImportError, ValueError, config_check.ConfigError):
    return None
  return config_check.learning_hash(config)


def stale_reason(record: dict, golden: str | None) -> str:
  if record.get('dirty'):
    return 'uncommitted code'
  if record.get('golden') != golden:
    return 'update changed'
  if record.get('config_hash') != current_config_hash(record):
    return 'config changed'
  return ''


def fmt(x, spec='.2f') -> str:
  return '-' if x is None else format(x, spec)


def median(values):
  """The median of the values that are not None; None when there are none."""
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def arm_key(arm: str):
  return (ARM_ORDER.index(arm) if arm in ARM_ORDER else len(ARM_ORDER), arm)


DOMAIN_ORDER = ('metaworld', 'kitchen')  # tables and panels in this order


def domain_key(domain: str):
  return (DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER), domain)


def learning_groups(records: list[dict]) -> dict:
  groups = {}
  for r in records:
    groups.setdefault((r['domain'], r['preset'], r['task'], r['arm']), []).append(r)
  return dict(sorted(groups.items(), key=lambda kv: (domain_key(kv[0][0]), kv[0][1], kv[0][2], arm_key(kv[0][3]))))


PRESET_ORDER = ('small', 'long', 'paper', 'debug')  # the README's tables in this order


def table_key(key: tuple):
  """Orders (domain, preset, ...) keys: the domains in DOMAIN_ORDER, then the presets in PRESET_ORDER."""
  domain, preset, *rest = key
  rank = PRESET_ORDER.index(preset) if preset in PRESET_ORDER else len(PRESET_ORDER)
  return (domain_key(domain), rank, preset, *rest)


def paper_arms(records: list[dict]) -> list[dict]:
  return [r for r in records if r['arm'] in PAPER_ARMS]
