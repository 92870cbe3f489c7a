"""A recorded dataset with no simulator behind it: `--config=configs/dataset.py:<dataset dir>`.

Offline training on your own robot's episodes (for example from `launch.convert`): the action size
and image shape come from the episode files, the run trains offline only (`train.env_steps = 0`),
and its evaluations read the last `data.holdout_episodes` episodes of the dataset, which training
never sees (`moto_jax/training/heldout.py`: action error, reward prediction, open-loop video
prediction). Nothing steps an environment.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.errors import DatasetError
from moto_jax.suites.base import Suite


def check_task(task: str) -> str:
  """`task` is the dataset directory: it must hold episode files."""
  directory = os.path.expanduser(task)
  if not ep_lib.episode_files(directory):
    raise DatasetError(f'{task}: no episode files (episode_*.npz); convert a dataset with launch.convert first')
  return task


class DatasetEnv:
  """What a run needs of an environment that a dataset can give: its action space, the settings it
  was recorded with, `close()`. It cannot act."""

  def __init__(self, directory: str, image_size: int = 64, **unused):
    del unused
    self.directory = os.path.expanduser(check_task(directory))
    first = ep_lib.load_episode(ep_lib.episode_files(self.directory)[0])
    dim = int(first['action'].shape[1])
    self.action_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
    self.observation_space = gym.spaces.Dict({'image': gym.spaces.Box(0, 255, first['image'].shape[1:], np.uint8)})
    self.image_size = int(image_size)
    manifest = manifest_lib.read_manifest(self.directory) or {}
    self._settings = manifest.get('env', {'domain': 'dataset'})

  def settings(self) -> dict:
    return dict(self._settings)

  def reset(self, *, seed=None, options=None):
    raise RuntimeError(f'{self.directory} is a dataset, not an environment: an offline-only run cannot act')

  step = reset

  def close(self):
    pass


class DatasetSuite(Suite):
  name = 'dataset'
  offline_only = True  # the main job trains offline and evaluates on held-out episodes

  def check_task(self, task: str) -> str:
    return check_task(task)

  def make_env(self, config, seed: int):
    del seed
    return DatasetEnv(config.task, image_size=config.env.image_size)

  def collect(self, config, out_dir: str, num_episodes: int | None = None, progress: bool = True) -> dict:
    raise DatasetError(f'{config.task}: a dataset suite cannot generate data; point it at existing episodes')


SUITE = DatasetSuite()
