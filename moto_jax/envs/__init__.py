"""Pixel environments: `make_env(config)` builds the one a config names."""
from moto_jax.envs.rendering import FastRenderer, FreeCamera


def make_env(config, seed: int | None = None):
  """Builds the environment of `config.domain` / `config.task` with `config.env` settings."""
  seed = config.seed if seed is None else seed
  if config.domain == 'metaworld':
    from moto_jax.envs.metaworld_env import MetaWorldEnv
    return MetaWorldEnv(config.task, seed=seed, **config.env)
  if config.domain == 'kitchen':
    from moto_jax.envs.kitchen_env import KitchenEnv
    return KitchenEnv(config.task, seed=seed, **config.env)
  raise ValueError(f'config.domain={config.domain!r}; expected "metaworld" or "kitchen"')
