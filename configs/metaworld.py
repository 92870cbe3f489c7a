"""MetaWorld from pixels. Usage: `--config=configs/metaworld.py:<task>[,<preset>]`.

`<task>` is a MetaWorld v3 task name without the `-v3` suffix (e.g. `drawer-open`),
or `paper` for the paper's ten tasks (dataset collection only). `<preset>` is one
of `paper`, `small` (default, fits a CPU) and `debug` (tests).
"""
import ml_collections

from configs import common

PAPER_TASKS = ('assembly', 'bin-picking', 'box-close', 'coffee-push', 'disassemble',
               'door-open', 'drawer-open', 'hammer', 'plate-slide', 'window-open')


def parse_arg(arg, default_task):
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  task, preset = default_task, 'small'
  for p in parts:
    if p in common.PRESETS:
      preset = p
    else:
      task = p
  return task, preset


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task, preset = parse_arg(arg, 'drawer-open')
  c = ml_collections.ConfigDict()
  c.domain = 'metaworld'
  c.task = task
  c.preset = preset
  c.seed = 0

  c.env = ml_collections.ConfigDict(dict(
      image_size=64,
      camera='authors',       # the authors' free camera, or a named MetaWorld camera ('corner', ...)
      action_repeat=2,
      episode_length=200 if preset != 'debug' else 10,   # agent steps
      render_quality='fast',  # 'fast' (no MSAA/shadows/reflections) or 'shipped'
      hand_init_noise=0.02,
  ))
  c.data = ml_collections.ConfigDict(dict(
      dir='',                 # offline dataset directory; empty = generate into cache_dir
      cache_dir='~/.cache/moto_jax/datasets',
      num_episodes=10 if preset != 'debug' else 3,
      action_noise=0.0,       # std of Gaussian noise added to the scripted actions
      skip_corrupt=False,     # skip (and count) unreadable episode files instead of failing
  ))
  c.model = common.model_config(preset)
  c.agent = common.agent_config(preset)
  c.train = common.train_config(preset)
  return c.lock()
