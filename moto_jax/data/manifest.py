"""Dataset manifests (`manifest.json`) and contact sheets for a dataset directory."""
from __future__ import annotations

import json
import os
import time

import numpy as np

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
    raise ValueError(f'{path}: not valid JSON ({e})') from e


def check_settings(directory: str, env_settings: dict) -> None:
  """Raises if a dataset was recorded with different environment settings than `env_settings`."""
  manifest = read_manifest(directory)
  if manifest is None:
    return
  recorded = json.loads(json.dumps(manifest['env']))
  current = json.loads(json.dumps(env_settings))
  diffs = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
  if diffs:
    detail = '; '.join(f'{k}: dataset {recorded.get(k)!r} vs env {current.get(k)!r}' for k in diffs)
    raise ValueError(f'{directory}: dataset recorded with different environment settings ({detail}). '
                     'Offline data and online rollouts must match; regenerate the dataset or change the config.')


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
