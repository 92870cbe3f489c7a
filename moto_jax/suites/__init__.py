"""Environment suites, read through one registry.

A suite is one folder, `moto_jax/suites/<name>/`, owning its task list and task check, the check of
the config fields only it reads, its pixel environment, its scripted policy and its dataset
collection behind the small interface of `base.Suite`. Its `__init__.py` defines `SUITE`.
`config.domain` names the suite. Adding one is a folder, a config file (`configs/<name>.py`, built
with `configs.common.assemble`) and one line in `SUITES` below (or `register(name,
'module:attribute')` from user code, e.g. a test's toy suite).

  moto_jax/suites/
    base.py          Suite (the interface) and the sequential scripted collector
    rendering.py     FastRenderer, FreeCamera (MuJoCo frames for any suite)
    metaworld/       env.py (MetaWorldEnv), __init__.py (tasks, expert policies)
    kitchen/         env.py (KitchenEnv), script.py (scripted controller), collect.py (play data)
    gym/             GymPixelEnv: any Gymnasium environment that renders (no expert)
    dataset/         a recorded dataset, no simulator: offline training, held-out evaluation
"""

from __future__ import annotations

import importlib

from moto_jax.suites.base import Suite

# config.domain -> 'module:attribute' of its Suite instance (imported on first use).
SUITES = {
  'metaworld': 'moto_jax.suites.metaworld:SUITE',
  'kitchen': 'moto_jax.suites.kitchen:SUITE',
  'gym': 'moto_jax.suites.gym:SUITE',
  'dataset': 'moto_jax.suites.dataset:SUITE',
}
_LOADED: dict[str, Suite] = {}


def register(name: str, target: str) -> None:
  """Adds (or replaces) suite `name`, given as 'module:attribute' of a `Suite` instance."""
  SUITES[name] = target
  _LOADED.pop(name, None)


def unregister(name: str) -> None:
  """Removes suite `name` (e.g. a test's toy suite) from the registry."""
  SUITES.pop(name, None)
  _LOADED.pop(name, None)


def names() -> tuple[str, ...]:
  return tuple(SUITES)


def get(name: str) -> Suite:
  """The suite registered as `name`; ValueError naming the registered ones otherwise."""
  if name not in SUITES:
    raise ValueError(f'Unknown suite (config.domain) {name!r}; registered: {", ".join(SUITES)}')
  if name not in _LOADED:
    module, attribute = SUITES[name].split(':')
    suite = getattr(importlib.import_module(module), attribute)
    if not isinstance(suite, Suite):
      raise TypeError(f'{SUITES[name]} is a {type(suite).__name__}, not a moto_jax.suites.Suite')
    _LOADED[name] = suite
  return _LOADED[name]


def make_env(config, seed: int | None = None):
  """The environment of `config.domain` / `config.task` with `config.env` settings."""
  return get(config.domain).make_env(config, config.seed if seed is None else seed)


def action_dim(config) -> int:
  """Size of `config.domain`'s action vector (`Suite.action_dim`)."""
  return get(config.domain).action_dim(config)
