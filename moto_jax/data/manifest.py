"""Dataset manifests (`manifest.json`) and contact sheets for a dataset directory."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from moto_jax.errors import DatasetError

from moto_jax.data import episodes as ep_lib

MANIFEST = 'manifest.json'


def summarize(episodes: list[dict]) -> dict:
  """The paper's Table 1 figures: episodes, transitions, average return, success rate."""
  returns = [float(e['reward'].sum()) for e in episodes]
  return dict(episodes=len(episodes),
              transitions=int(sum(ep_lib.num_steps(e) for e in episodes)),
              average_return=float(np.mean(returns)) if returns else 0.0,
              success_rate=float(np.mean([bool(e['success']) for e in episodes])) if episodes else 0.0,
              bc_weight_share=float(np.mean([float(e['bc_weight']) for e in episodes])) if episodes else 0.0)


def write_manifest(directory: str, env_settings: dict, collector: dict, episodes: list[dict],
                   extra: dict | None = None) -> dict:
  manifest = dict(env=env_settings, collector=collector, **summarize(episodes),
                  created=time.strftime('%Y-%m-%dT%H:%M:%S'), **(extra or {}))
  tmp = os.path.join(directory, MANIFEST + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(directory, MANIFEST))
  return manifest


def read_manifest(directory: str) -> dict | None:
  path = os.path.join(directory, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DatasetError(f'{path}: not valid JSON ({e}); regenerate the dataset or remove the file') from e


def _differences(a, b, prefix: str = '') -> list[tuple[str, object, object]]:
  """(key, a's value, b's value) where two nested dicts differ, at the deepest key both hold as dicts."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _differences(a.get(k, '<absent>'), b.get(k, '<absent>'), f'{prefix}{k}.')
    return out
  return [] if a == b else [(prefix.rstrip('.'), a, b)]


def check_settings(directory: str, env_settings: dict, env_config: dict | None = None) -> None:
  """Raises `DatasetError` if a dataset was recorded with other environment settings than
  `env_settings`, naming each differing setting and, with `env_config` (the run's `config.env`),
  the config fields that chose this run's."""
  manifest = read_manifest(directory)
  if manifest is None:
    return
  if not isinstance(manifest.get('env'), dict):
    raise DatasetError(f'{os.path.join(directory, MANIFEST)}: no "env" settings; regenerate the dataset or remove the file')
  diffs = _differences(json.loads(json.dumps(manifest['env'])), json.loads(json.dumps(env_settings)))
  if diffs:
    detail = '; '.join(f'{k}: dataset {old!r}, this run {new!r}' for k, old, new in diffs)
    chosen = ''
    if env_config:
      chosen = ' This run has ' + ', '.join(f'config.env.{k}={v!r}' for k, v in sorted(env_config.items())) + '.'
    raise DatasetError(
      f'{directory}: the dataset was recorded with other environment settings ({detail}).{chosen} Offline data '
      'and online rollouts must match: regenerate the dataset, point --config.data.dir elsewhere, or change the config.'
    )


def contact_sheet(episodes: list[dict], path: str, max_episodes: int = 8, scale: int = 2) -> str:
  """PNG of the first, middle and last frame of some episodes, one row each.

  A green border marks a successful episode, a red one a failed episode.
  """
  import imageio.v3 as iio
  rows = []
  for e in episodes[:max_episodes]:
    img = e['image']
    frames = [img[0], img[len(img) // 2], img[-1]]
    color = np.array([40, 200, 40] if bool(e['success']) else [220, 40, 40], np.uint8)
    tiles = []
    for f in frames:
      f = np.repeat(np.repeat(f, scale, 0), scale, 1)
      tile = np.empty((f.shape[0] + 4, f.shape[1] + 4, 3), np.uint8)
      tile[:] = color
      tile[2:-2, 2:-2] = f
      tiles.append(tile)
    rows.append(np.concatenate(tiles, axis=1))
  sheet = np.concatenate(rows, axis=0)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  iio.imwrite(path, sheet)
  return path
