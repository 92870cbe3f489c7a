"""Scripted demonstrations for MetaWorld with `metaworld.policies`.

Episode `i` of a dataset with seed `s` resets the environment with seed
`episode_seed(s, i)`, so a dataset is reproducible and an interrupted collection
resumes by skipping the episodes already on disk.
"""
from __future__ import annotations

import os

import numpy as np
import tqdm

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib


def episode_seed(seed: int, index: int) -> int:
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class _Recorder:
  """Accumulates one episode's steps from `reset` and `step` results; `episode()` builds the dict."""

  def __init__(self, env, obs, info):
    self.step_info = getattr(env, 'STEP_INFO', {})   # episode key -> info key (e.g. Kitchen's tasks)
    self.images, self.actions, self.rewards = [obs['image']], [np.zeros(env.action_space.shape[0], np.float32)], [0.0]
    self.recorded = {k: [info[i]] for k, i in self.step_info.items()}
    self.success, self.terminated, self.done = False, False, False

  def add(self, action, obs, reward, terminated, truncated, info):
    self.images.append(obs['image'])
    self.actions.append(action)
    self.rewards.append(reward)
    for k, i in self.step_info.items():
      self.recorded[k].append(info[i])
    self.success = self.success or bool(info.get('success', 0.0))
    self.terminated, self.done = bool(terminated), bool(terminated or truncated)

  def episode(self) -> dict:
    n = len(self.images)
    is_terminal = np.zeros(n, bool)
    is_terminal[-1] = self.terminated
    return dict(image=np.stack(self.images), action=np.stack(self.actions),
                reward=np.asarray(self.rewards, np.float32),
                discount=(1.0 - is_terminal).astype(np.float32), is_first=np.arange(n) == 0,
                is_terminal=is_terminal, success=np.array(self.success), bc_weight=np.float32(self.success),
                **{k: np.stack(v) for k, v in self.recorded.items()})


def rollout(env, policy_fn, seed: int) -> dict:
  """Runs one episode; `policy_fn(obs, info) -> action`. Returns it in the episode format."""
  obs, info = env.reset(seed=seed)
  rec = _Recorder(env, obs, info)
  while not rec.done:
    action = np.clip(np.asarray(policy_fn(obs, info), np.float32), -1.0, 1.0)
    obs, reward, terminated, truncated, info = env.step(action)
    rec.add(action, obs, reward, terminated, truncated, info)
  return rec.episode()


def rollout_batch(envs: list, policy_fn, seeds: list[int]) -> list[dict]:
  """Runs `len(seeds)` episodes in lock step, episode k in `envs[k]`; one batched policy call per step.

  `policy_fn(images uint8 [N, H, W, 3], is_first bool [N]) -> actions [N, A]` always sees
  N = len(envs) rows: rows without an episode, or whose episode has ended, repeat their last image
  and their actions are discarded. Each episode equals what `rollout` records for the same actions.
  """
  if len(seeds) > len(envs):
    raise ValueError(f'{len(seeds)} episodes need as many environments; got {len(envs)}')
  recs = []
  for env, seed in zip(envs, seeds):
    obs, info = env.reset(seed=seed)
    recs.append(_Recorder(env, obs, info))
  pad = [recs[-1]] * (len(envs) - len(recs))
  first = np.ones(len(envs), bool)
  while not all(r.done for r in recs):
    images = np.stack([r.images[-1] for r in recs + pad])
    actions = np.clip(np.asarray(policy_fn(images, first), np.float32), -1.0, 1.0)
    first[:] = False
    for env, rec, action in zip(envs, recs, actions):
      if not rec.done:
        rec.add(action, *env.step(action))
  return [r.episode() for r in recs]


def scripted_policy(task: str, env, rng: np.random.Generator, action_noise: float):
  """The MetaWorld expert for `task`, with optional Gaussian action noise."""
  from metaworld.policies import ENV_POLICY_MAP
  import warnings
  warnings.filterwarnings('ignore', message='Constant\\(s\\) may be too high')
  expert = ENV_POLICY_MAP[f'{task}-v3']()

  def policy_fn(obs, info):
    del obs
    action = expert.get_action(info['state'])
    if action_noise > 0:
      action = action + action_noise * rng.standard_normal(action.shape)
    return action
  return policy_fn


def collect_metaworld(config, out_dir: str, num_episodes: int | None = None, seed: int | None = None,
                      action_noise: float | None = None, progress: bool = True) -> dict:
  """Writes `num_episodes` scripted episodes of `config.task` to `out_dir`; returns the manifest."""
  from moto_jax.envs import make_env
  num_episodes = config.data.num_episodes if num_episodes is None else num_episodes
  seed = config.seed if seed is None else seed
  action_noise = config.data.action_noise if action_noise is None else action_noise
  os.makedirs(out_dir, exist_ok=True)
  env = make_env(config, seed=seed)
  try:
    manifest_lib.check_settings(out_dir, env.settings())
    episodes = []
    bar = tqdm.tqdm(range(num_episodes), desc=f'collect {config.task}', unit='ep', disable=not progress)
    for i in bar:
      path = os.path.join(out_dir, ep_lib.episode_name(i))
      if os.path.exists(path):
        episodes.append(ep_lib.load_episode(path))
      else:
        ep_seed = episode_seed(seed, i)
        policy = scripted_policy(config.task, env, np.random.default_rng(ep_seed), action_noise)
        episode = rollout(env, policy, ep_seed)
        ep_lib.save_episode(path, episode)
        episodes.append(episode)
      bar.set_postfix(success=f'{np.mean([bool(e["success"]) for e in episodes]):.2f}')
    collector = dict(kind='metaworld.policies', seed=seed, action_noise=action_noise)
    manifest = manifest_lib.write_manifest(out_dir, env.settings(), collector, episodes)
    manifest_lib.contact_sheet(episodes, os.path.join(out_dir, 'contact_sheet.png'))
  finally:
    env.close()
  return manifest
