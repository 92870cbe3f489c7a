"""Finding (or generating) the offline dataset a config asks for."""

from __future__ import annotations

import hashlib
import json
import os

from moto_jax import suites
from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.errors import DatasetError
from moto_jax.training import config_check


def cache_path(config) -> str:
  """`<cache_dir>/<domain>/<task>-<hash of what determines the data>`."""
  # A field added since datasets were first made, at the value that keeps what they were
  # (config_check.ADDED_FIELDS), leaves the path as it was.
  added = lambda section, k, v: (
    f'{section}.{k}' in config_check.ADDED_FIELDS and config_check.ADDED_FIELDS[f'{section}.{k}'] == v
  )
  key = dict(
    env={k: v for k, v in config.env.to_dict().items() if not added('env', k, v)},
    data={
      k: v
      for k, v in config.data.to_dict().items()
      if k not in ('dir', 'cache_dir', 'skip_corrupt', 'workers', 'subset_episodes', 'bc_segments')
      and not added('data', k, v)
    },
    seed=config.seed,
  )
  digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
  return os.path.join(os.path.expanduser(config.data.cache_dir), config.domain, f'{config.task}-{digest}')


def resolve(config, log=print) -> str:
  """Returns the offline dataset directory, generating the scripted dataset if needed."""
  if config.data.dir:
    directory = os.path.expanduser(config.data.dir)
    if not ep_lib.episode_files(directory):
      raise DatasetError(f'config.data.dir={config.data.dir!r} holds no episode files (episode_*.npz)')
    return directory
  directory = cache_path(config)
  have = len(ep_lib.episode_files(directory))
  if have >= config.data.num_episodes and manifest_lib.read_manifest(directory) is not None:
    log(f'Offline data: {have} episodes in {directory}')
    return directory
  log(f'Offline data: generating {config.data.num_episodes} scripted episodes into {directory}')
  suites.get(config.domain).collect(config, directory)
  return directory


def collect_tasks(
  config, out_dir: str, tasks: list[str] | None = None, num_episodes: int | None = None, log=print
) -> dict:
  """Writes the scripted dataset of each task (default: `config.task`; a suite's task group such as
  MetaWorld's 'paper' expands) to `<out_dir>/<task>/`; returns {task: manifest}. Every name is
  checked before anything is collected."""
  suite = suites.get(config.domain)
  try:
    names = suite.expand_tasks(list(tasks or [config.task]))
  except ValueError as e:
    raise config_check.ConfigError(f'task: {e}') from None
  configs = {}
  for task in names:
    configs[task] = config.copy_and_resolve_references()
    configs[task].unlock()
    configs[task].task = task
    config_check.validate(configs[task])  # every task's fields, before anything is collected
  out = {}
  for task, task_config in configs.items():
    task_dir = os.path.join(out_dir, task)
    out[task] = suite.collect(task_config, task_dir, num_episodes=num_episodes)
    log(f'{task}: ' + json.dumps({k: out[task].get(k) for k in suite.summary_keys}) + f' -> {task_dir}')
  return out


SUBSET_FILE = 'offline_subset.json'


def subset(config, directory: str, workdir: str, log=print, write: bool = True) -> list[str] | None:
  """The offline episode files a run trains on: all (None) unless `config.data.subset_episodes` > 0,
  then that many drawn without replacement from `[config.seed, streams.OFFLINE_SUBSET]` (App. A.2),
  in file order, and recorded in `<workdir>/offline_subset.json` (a resumed run checks it)."""
  n = config.data.subset_episodes
  if not n:
    return None
  import numpy as np

  from moto_jax.training import streams

  files = [os.path.basename(f) for f in ep_lib.episode_files(directory)]
  if n > len(files):
    raise DatasetError(f'config.data.subset_episodes={n}, but {directory} holds only {len(files)} episodes')
  chosen = sorted(np.random.default_rng([config.seed, streams.OFFLINE_SUBSET]).choice(len(files), n, replace=False))
  names = [files[i] for i in chosen]
  path = os.path.join(workdir, SUBSET_FILE)
  if os.path.exists(path):
    with open(path) as f:
      recorded = json.load(f)['episodes']
    if recorded != names:
      raise DatasetError(
        f'{path} records a different offline subset than config.data.subset_episodes={n}, '
        f'config.seed={config.seed} and {directory} give now (one of them changed since the run '
        f'started); restore them, or start the run in another workdir'
      )
  elif write:  # (a multi-process run: process 0 writes it)
    os.makedirs(workdir, exist_ok=True)
    with open(path, 'w') as f:
      json.dump(
        {'directory': directory, 'seed': config.seed, 'subset_episodes': n, 'of': len(files), 'episodes': names},
        f,
        indent=1,
      )
  log(f'Offline subset: {n} of {len(files)} episodes (data.subset_episodes), listed in {path}')
  return names


def hold_out(config, directory: str, names: list[str] | None) -> tuple[list[str], list[str]]:
  """(the episode files training reads, the last `config.data.holdout_episodes` held out for
  evaluation) of an offline-only run; `names`: the files chosen so far (None: all)."""
  files = [os.path.basename(f) for f in ep_lib.episode_files(directory)]
  k = int(config.data.get('holdout_episodes', 0))
  if not 0 < k < len(files):
    raise DatasetError(
      f'config.data.holdout_episodes={k}: an offline-only run holds out 1 .. {len(files) - 1} of the '
      f'{len(files)} episodes in {directory} for evaluation'
    )
  held = files[-k:]
  return [n for n in (names or files) if n not in held], held
