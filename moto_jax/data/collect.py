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


def rollout(env, policy_fn, seed: int) -> dict:
  """Runs one episode; `policy_fn(obs, info) -> action`. Returns it in the episode format."""
  obs, info = env.reset(seed=seed)
  action_dim = env.action_space.shape[0]
  images, actions, rewards = [obs['image']], [np.zeros(action_dim, np.float32)], [0.0]
  # Per-step flags a domain records from `info` (e.g. Kitchen's task completion), episode key -> info key.
  step_info = getattr(env, 'STEP_INFO', {})
  recorded = {k: [info[i]] for k, i in step_info.items()}
  success = False
  while True:
    action = np.clip(np.asarray(policy_fn(obs, info), np.float32), -1.0, 1.0)
    obs, reward, terminated, truncated, info = env.step(action)
    images.append(obs['image'])
    actions.append(action)
    rewards.append(reward)
    for k, i in step_info.items():
      recorded[k].append(info[i])
    success = success or bool(info.get('success', 0.0))
    if terminated or truncated:
      break
  n = len(images)
  is_terminal = np.zeros(n, bool)
  is_terminal[-1] = bool(terminated)
  return dict(image=np.stack(images), action=np.stack(actions), reward=np.asarray(rewards, np.float32),
              discount=(1.0 - is_terminal).astype(np.float32), is_first=np.arange(n) == 0,
              is_terminal=is_terminal, success=np.array(success), bc_weight=np.float32(success),
              **{k: np.stack(v) for k, v in recorded.items()})


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
