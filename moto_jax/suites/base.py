"""The interface every environment suite implements, and the sequential scripted collector."""

from __future__ import annotations

import os

import numpy as np
import tqdm

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.data import rollout as rollout_lib


def require(cond: bool, field: str, value, expect: str) -> None:
  """Raises ValueError('config.<field>=<value>: <expect>') unless `cond` (a suite's `check_config`)."""
  if not cond:
    raise ValueError(f'config.{field}={value!r}: {expect}')


class Suite:
  """An environment suite: its tasks, its pixel environment, its scripted policy and its data.

  A suite lives in one folder, `moto_jax/suites/<name>/`, whose `__init__.py` defines `SUITE`, an
  instance of a subclass, and is named in the registry (`moto_jax.suites.SUITES`). The library reads
  suites only through the registry. A subclass sets `name` and implements `check_task`, `make_env` and
  either `scripted_policy` (the sequential `collect` below then writes its datasets) or its own
  `collect`; `check_config` checks the config fields only it reads.

  The environment: a gymnasium-style env with `reset(seed=...) -> (obs, info)` and
  `step(action) -> (obs, reward, terminated, truncated, info)`, observations `{'image': uint8
  [S, S, 3]}` (S = config.env.image_size), a Box `action_space` in [-1, 1], `info['success']` (0/1),
  `settings()` (a JSON-able dict of everything that determines what the agent sees, recorded with
  every dataset) and `close()`. It may name per-step info to record in episodes (`STEP_INFO`).
  """

  name: str = ''
  # Named groups of tasks for `launch.collect --tasks=<group>` (e.g. MetaWorld's 'paper').
  task_groups: dict[str, tuple[str, ...]] = {}
  # Manifest fields `launch.collect` prints per task.
  summary_keys: tuple[str, ...] = ('episodes', 'transitions', 'average_return', 'success_rate')

  def check_task(self, task: str) -> str:
    """Returns the canonical task name, or raises ValueError listing the valid ones."""
    raise NotImplementedError

  def check_config(self, config) -> None:
    """Raises ValueError naming the first bad field among those only this suite reads (its
    `config.env` and `config.data` settings), as `require` words it. `config_check.validate` calls it
    before anything is collected or compiled; the default checks nothing."""
    del config

  def make_env(self, config, seed: int):
    """The pixel environment of `config.task` with the `config.env` settings."""
    raise NotImplementedError

  def action_dim(self, config) -> int:
    """Size of the action vector. The default builds an environment to read it; a suite whose size is
    fixed returns it directly, so restoring a checkpoint needs no simulator."""
    env = self.make_env(config, config.seed)
    try:
      return int(env.action_space.shape[0])
    finally:
      env.close()

  def scripted_policy(self, env, config, rng: np.random.Generator, action_noise: float | None = None):
    """A `policy_fn(obs, info) -> action` solving `config.task` (it may read `info`; agents never do),
    with Gaussian action noise of std `action_noise` (default `config.data.action_noise`) drawn from `rng`."""
    raise NotImplementedError(f'suite {self.name!r} has no scripted policy')

  def collection_policy(self, env, config, rng: np.random.Generator):
    """The policy `collect` writes datasets with: the scripted expert (a suite without one may
    collect with another policy, e.g. random actions, and stays without an expert)."""
    return self.scripted_policy(env, config, rng)

  def has_expert(self) -> bool:
    """Whether `expert_episodes` can run (the suite has a scripted policy or its own expert)."""
    cls = type(self)
    return cls.scripted_policy is not Suite.scripted_policy or cls.expert_episodes is not Suite.expert_episodes

  def prior_rule(self, config) -> str:
    """How an episode earns `bc_weight` 1 (the behaviour prior of Eq. 10), in words."""
    return "the environment's success flag at some step"

  def step_weights(self, config):
    """None (each step carries its episode's `bc_weight`), or `f(episode) -> float32 [T+1]`, the
    behaviour-prior weight of each step, which the episode store uses in place of `bc_weight`."""
    del config
    return None

  def collector_info(self, config) -> dict:
    """What generated a dataset, recorded in its manifest."""
    return dict(kind=f'{self.name} scripted policy', seed=config.seed)

  def expand_tasks(self, names: list[str]) -> list[str]:
    """Task names with groups (`task_groups`) expanded, each checked (a bad name fails before any work)."""
    out = []
    for n in names:
      out += list(self.task_groups[n]) if n in self.task_groups else [n]
    return [self.check_task(t) for t in out]

  def collect(self, config, out_dir: str, num_episodes: int | None = None, progress: bool = True) -> dict:
    """Writes `num_episodes` (default `config.data.num_episodes`) scripted episodes of `config.task` to
    `out_dir`, one after the other, resuming past the episodes already there; returns the manifest.
    Episode i uses seed `episode_seed(config.seed, i)` for the reset and the policy's noise."""
    num_episodes = config.data.num_episodes if num_episodes is None else int(num_episodes)
    os.makedirs(out_dir, exist_ok=True)
    env = self.make_env(config, config.seed)
    try:
      manifest_lib.check_settings(out_dir, env.settings())
      episodes = []
      bar = tqdm.tqdm(range(num_episodes), desc=f'collect {config.task}', unit='ep', disable=not progress)
      for i in bar:
        path = os.path.join(out_dir, ep_lib.episode_name(i))
        if os.path.exists(path):
          episodes.append(ep_lib.load_episode(path))
        else:
          seed = rollout_lib.episode_seed(config.seed, i)
          policy = self.collection_policy(env, config, np.random.default_rng(seed))
          episode = rollout_lib.rollout(env, policy, seed)
          ep_lib.save_episode(path, episode)
          episodes.append(episode)
        bar.set_postfix(success=f'{np.mean([bool(e["success"]) for e in episodes]):.2f}')
      manifest = manifest_lib.write_manifest(out_dir, env.settings(), self.collector_info(config), episodes)
      manifest_lib.contact_sheet(episodes, os.path.join(out_dir, 'contact_sheet.png'))
    finally:
      env.close()
    return manifest

  def expert_episodes(self, config, seeds: list[int]) -> list[dict]:
    """Noise-free scripted episodes of `config.task`, one per start seed, to the episode's time limit
    (the reference policy of the uncertainty bound, the input of open-loop prediction)."""
    env = self.make_env(config, config.seed)
    try:
      return [
        rollout_lib.rollout(env, self.scripted_policy(env, config, np.random.default_rng(seed), action_noise=0.0), seed)
        for seed in seeds
      ]
    finally:
      env.close()

  def held_out_episodes(self, config, n: int, offset: int = 7_000_000) -> list[dict]:
    """`n` expert episodes from start seeds no dataset uses (open-loop prediction's input)."""
    return self.expert_episodes(config, [rollout_lib.episode_seed(config.seed, offset + i) for i in range(n)])
