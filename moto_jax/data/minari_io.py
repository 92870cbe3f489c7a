"""Minari datasets (HDF5 or Arrow, through the `minari` package) read as this library's episodes, and
episodes written as a Minari dataset (`convert.py` holds the shared rules and the episode builder).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from moto_jax.data import episodes as ep_lib
from moto_jax.data.convert import Rules, Writer, action_bounds, finish, make_episode
from moto_jax.errors import DatasetError


def from_minari(src: str, out_dir: str, rules: Rules, progress: bool = True) -> dict:
  """A Minari dataset (HDF5 or Arrow; read by the `minari` package): `src` is a dataset id in the
  local Minari root or a dataset's folder. Each episode has T + 1 observations (the image itself, or
  `observations[image_key]` of a Dict space), T actions and rewards, `terminations`, and success from
  `infos[success_key]` (recorded with `record_infos=True`). Action bounds default to the dataset's
  finite Box bounds, else the data's min and max."""
  import minari
  import tqdm

  path = os.path.join(src, 'data') if os.path.isdir(os.path.join(src, 'data')) else src
  try:
    dataset = minari.MinariDataset(path) if os.path.isdir(path) else minari.load_dataset(src)
  except Exception as e:  # noqa: BLE001 - minari raises several kinds
    raise DatasetError(f'{src}: not a readable Minari dataset ({type(e).__name__}: {e})') from e
  space = dataset.action_space
  if (
    rules.action_low is None
    and rules.action_high is None
    and np.isfinite(space.low).all()
    and np.isfinite(space.high).all()
  ):
    rules = dataclasses.replace(
      rules, action_low=tuple(map(float, space.low)), action_high=tuple(map(float, space.high))
    )
  if rules.action_low is None or rules.action_high is None:
    low, high = action_bounds([e.actions for e in dataset.iterate_episodes()], rules)
  else:
    low, high = np.asarray(rules.action_low, np.float64), np.asarray(rules.action_high, np.float64)
  os.makedirs(out_dir, exist_ok=True)
  start, frames, writer = time.time(), 0, Writer(out_dir)
  for i, e in enumerate(
    tqdm.tqdm(dataset.iterate_episodes(), total=dataset.total_episodes, desc='minari', unit='ep', disable=not progress)
  ):
    name = f'{src} (episode {e.id})'
    images = e.observations
    if isinstance(images, dict):
      if rules.image_key not in images:
        raise DatasetError(f'{name}: no observation {rules.image_key!r} (has {sorted(images)})')
      images = images[rules.image_key]
    flags = e.infos.get(rules.success_key) if rules.success_rule == 'key' else None
    if rules.success_rule == 'key' and flags is None:
      raise DatasetError(
        f'{name}: no info {rules.success_key!r} (record it with record_infos=True, or use success_rule=reward|none)'
      )
    episode = make_episode(images, e.actions, e.rewards, flags, e.terminations, rules, low, high, name)
    frames += len(episode['image'])
    writer.add(i, episode)
  summaries = writer.summaries()
  extra = dict(minari_id=dataset.id, frames_per_second=round(frames / max(time.time() - start, 1e-9), 1))
  return finish(out_dir, dict(kind='minari', src=str(src)), rules, low, high, summaries, extra)


def to_minari(episodes_dir: str, dataset_id: str, data_format: str = 'hdf5', jpeg: bool = False) -> str:
  """Writes this library's episodes as a Minari dataset in the local Minari root (the inverse of
  `from_minari`): T + 1 image observations, the T actions and rewards after the reset, `terminations`
  from `is_terminal`, `infos['success']` (the episode's success on its last step). `jpeg=False` stores
  the images losslessly (Minari >= 0.5.3 JPEG-encodes uint8 images by default). Returns the id."""
  import gymnasium as gym
  import minari
  from minari.data_collector import EpisodeBuffer

  files = ep_lib.episode_files(episodes_dir)
  if not files:
    raise DatasetError(f'{episodes_dir}: no episode files')
  buffers = []
  for i, path in enumerate(files):
    e = ep_lib.load_episode(path)
    n = len(e['image']) - 1
    end = np.zeros(n, bool)
    end[-1] = True
    success = np.zeros(n + 1, bool)
    success[-1] = bool(e['success'])
    terminal = bool(e['is_terminal'][-1])
    buffers.append(
      EpisodeBuffer(
        id=i,
        observations=e['image'],
        actions=e['action'][1:],
        rewards=list(e['reward'][1:].astype(np.float64)),
        terminations=list(end & terminal),
        truncations=list(end & (not terminal)),
        infos={'success': [bool(x) for x in success]},  # a list: Minari's Arrow storage fails on 1-D arrays
      )
    )
  first = ep_lib.load_episode(files[0])
  minari.create_dataset_from_buffers(
    dataset_id,
    buffers,
    action_space=gym.spaces.Box(-1.0, 1.0, first['action'].shape[1:], np.float32),
    observation_space=gym.spaces.Box(0, 255, first['image'].shape[1:], np.uint8),
    data_format=data_format,
    jpeg_encoding=jpeg,
  )
  return dataset_id
