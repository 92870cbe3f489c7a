"""Finding (or generating) the offline dataset a config asks for."""
from __future__ import annotations

import hashlib
import json
import os

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib


def cache_path(config) -> str:
  """`<cache_dir>/<domain>/<task>-<hash of what determines the data>`."""
  key = dict(env=config.env.to_dict(), data={k: v for k, v in config.data.to_dict().items()
                                            if k not in ('dir', 'cache_dir', 'skip_corrupt', 'workers')},
             seed=config.seed)
  digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
  return os.path.join(os.path.expanduser(config.data.cache_dir), config.domain, f'{config.task}-{digest}')


def resolve(config, log=print) -> str:
  """Returns the offline dataset directory, generating the scripted dataset if needed."""
  if config.data.dir:
    directory = os.path.expanduser(config.data.dir)
    if not ep_lib.episode_files(directory):
      raise FileNotFoundError(f'config.data.dir={config.data.dir!r} holds no episode files (*.npz)')
    return directory
  directory = cache_path(config)
  have = len(ep_lib.episode_files(directory))
  if have >= config.data.num_episodes and manifest_lib.read_manifest(directory) is not None:
    log(f'Offline data: {have} episodes in {directory}')
    return directory
  log(f'Offline data: generating {config.data.num_episodes} scripted episodes into {directory}')
  if config.domain == 'metaworld':
    from moto_jax.data import collect
    collect.collect_metaworld(config, directory)
  else:
    from moto_jax.data import kitchen_collect
    kitchen_collect.collect_kitchen(config, directory)
  return directory
