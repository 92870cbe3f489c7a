"""Any Gymnasium environment that renders. Usage: `--config=configs/gym.py:<env id>[,<preset>]`.

`<env id>` is a registered Gymnasium id (e.g. `InvertedPendulum-v5`); pixels come from its
`render()`, success from `info[env.success_key]` (moto_jax/suites/gym). Without `--config.data.dir`
the offline data are uniformly random episodes (the suite has no expert).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task, preset = common.parse_arg(arg, 'InvertedPendulum-v5', 'configs/gym.py')
  env = dict(action_repeat=1, episode_length=200, success_key='success')
  data = dict(num_episodes=10, action_noise=0.0)
  return common.assemble('gym', task, preset, env, data, {'train.bound_episodes': 0, **PRESET_OVERRIDES[preset]})


PRESET_OVERRIDES = {'paper': {}, 'small': {}, 'long': {}, 'debug': {'env.episode_length': 10, 'data.num_episodes': 3}}
