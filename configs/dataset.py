"""Offline training on a recorded dataset, no simulator: `--config=configs/dataset.py:<dir>[,<preset>]`.

`<dir>` holds episode files (e.g. from `launch.convert`). The run trains offline
(`train.offline_steps`), and each evaluation reads the last `data.holdout_episodes` episodes, which
training never sees: action error, reward prediction and open-loop video prediction.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task, preset = common.parse_arg(arg, 'data/mine', 'configs/dataset.py')
  env = dict(action_repeat=1, episode_length=1000)
  data = dict(num_episodes=1, action_noise=0.0, holdout_episodes=2)  # (num_episodes: unused, data.dir is given)
  c = common.assemble(
    'dataset', task, preset, env, data, {'train.env_steps': 0, 'train.bound_episodes': 0, **PRESET_OVERRIDES[preset]}
  )
  c.unlock()
  c.data.dir = task
  return c.lock()


PRESET_OVERRIDES = {'paper': {}, 'small': {}, 'long': {}, 'debug': {}}
