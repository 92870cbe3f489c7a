"""Running a policy through episodes of any suite: one rollout function, in the episode format.

Episode `i` of a dataset with seed `s` resets the environment with seed `episode_seed(s, i)`, so a
dataset is reproducible and an interrupted collection resumes by skipping the episodes on disk.

The stop and label rules are parameters, so evaluation, exploring episodes and every suite's
scripted collection share `rollout`:
  * `cut(info) -> bool`: the step just taken is dropped and the episode ends (Kitchen 'partial'
    stops before any full solution);
  * `stop(info) -> bool`: the episode ends after this step (a script that has finished);
  * `label(episode, success) -> (success, bc_weight)`, given the recorded episode and whether any
    step's `info['success']` was set: by default that `success`, and `bc_weight` = `success`.
The episode also ends when the environment terminates or truncates. An environment may name
per-step info to record (`env.STEP_INFO`: episode key -> info key, e.g. Kitchen's task flags).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def episode_seed(seed: int, index: int) -> int:
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def default_label(episode: dict, success: bool) -> tuple[bool, float]:
  """`success` is any step's `info['success']` after the reset; `bc_weight` is `success`."""
  del episode
  return success, float(success)


class _Recorder:
  """Accumulates one episode's steps from `reset` and `step` results; `episode()` builds the dict."""

  def __init__(self, env, obs, info):
    self.step_info = getattr(env, 'STEP_INFO', {})
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

  def episode(self, label=default_label) -> dict:
    n = len(self.images)
    is_terminal = np.zeros(n, bool)
    is_terminal[-1] = self.terminated
    out = dict(image=np.stack(self.images), action=np.stack(self.actions),
               reward=np.asarray(self.rewards, np.float32),
               discount=(1.0 - is_terminal).astype(np.float32), is_first=np.arange(n) == 0,
               is_terminal=is_terminal)
    recorded = {k: np.stack(v) for k, v in self.recorded.items()}
    success, bc_weight = label({**out, **recorded}, self.success)
    return {**out, 'success': np.array(bool(success)), 'bc_weight': np.float32(bc_weight), **recorded}


def rollout(env, policy_fn, seed: int, *, stop: Callable[[dict], bool] | None = None,
            cut: Callable[[dict], bool] | None = None, label=default_label) -> dict:
  """Runs one episode; `policy_fn(obs, info) -> action` (clipped to [-1, 1]). Returns it in the
  episode format; `stop`, `cut` and `label` as in the module docstring."""
  obs, info = env.reset(seed=seed)
  rec = _Recorder(env, obs, info)
  while not rec.done:
    action = np.clip(np.asarray(policy_fn(obs, info), np.float32), -1.0, 1.0)
    obs, reward, terminated, truncated, info = env.step(action)
    if cut is not None and cut(info):
      break
    rec.add(action, obs, reward, terminated, truncated, info)
    if stop is not None and stop(info):
      break
  return rec.episode(label)


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
