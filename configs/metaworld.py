"""MetaWorld from pixels. Usage: `--config=configs/metaworld.py:<task>[,<preset>]`.

`<task>` is a MetaWorld v3 task name without the `-v3` suffix (e.g. `drawer-open`).
`<preset>` is one of `paper`, `small` (default, fits a CPU), `long` (`small` with 10x the online
steps) and `debug` (tests). The paper's ten tasks (`moto_jax.suites.metaworld.PAPER_TASKS`) are collected with `launch.collect --tasks=paper`.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task, preset = common.parse_arg(arg, 'drawer-open', 'configs/metaworld.py')
  env = dict(
    camera='authors',  # the authors' free camera, or a named MetaWorld camera ('corner', ...)
    action_repeat=2,
    episode_length=200,  # agent steps
    hand_init_noise=0.02,
    # 'sparse': 1.0 at success (the paper); 'dense' (beyond the paper): MetaWorld's shaped reward
    # / 10, a study of the value term with a reward that says how to approach the goal. A data change.
    reward='sparse',
  )
  data = dict(
    num_episodes=10,
    action_noise=0.0,  # std of Gaussian noise added to the scripted actions
  )
  return common.assemble('metaworld', task, preset, env, data, PRESET_OVERRIDES[preset])


PRESET_OVERRIDES = {'paper': {}, 'small': {}, 'long': {}, 'debug': {'env.episode_length': 10, 'data.num_episodes': 3}}
