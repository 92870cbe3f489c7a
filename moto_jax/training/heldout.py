"""Evaluation without an environment: on episodes that training never sees.

An offline-only run (`configs/dataset.py`) holds out the last `data.holdout_episodes` episodes of
its dataset and, at every evaluation, reports on them:
* `diag/action_err_{reset,start,middle,end}` (and per dimension): the acting policy's mode against
  the recorded actions, on the posterior of the recorded images (training/diagnostics.py), every
  held-out episode counted;
* `heldout/reward_mae`: the reward head on the posterior against the recorded rewards;
* `heldout/openloop_image_mse`, `heldout/openloop_reward_mae`: open-loop prediction
  (agent/openloop.py) after `context` observed frames, on the recorded actions, against the
  recorded frames (pixels in [0, 1]) and rewards.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from moto_jax.agent.openloop import openloop_predict
from moto_jax.training import diagnostics

MAX_STEPS = 64  # steps of each held-out episode the predictions read


class HeldOut:
  def __init__(self, parts, episodes: list[dict], mesh=None, context: int = 5):
    if not episodes:
      raise ValueError('held-out evaluation needs at least one episode')
    nets = parts.nets
    multiple = mesh.devices.size if mesh is not None else 1
    every = [dict(e, bc_weight=np.float32(1.0)) for e in episodes]  # all of them, success or not
    demos = diagnostics.demo_episodes(every, max_episodes=len(every), gamma=parts.config.agent.gamma, multiple=multiple)
    self.diagnostics = diagnostics.Diagnostics(parts, demos, mesh=mesh)
    length = min(MAX_STEPS, min(len(e['image']) for e in episodes))
    self.batch = {
      k: np.stack([np.asarray(e[k][:length]) for e in episodes]) for k in ('image', 'action', 'reward', 'is_first')
    }
    self.context = max(1, min(context, length - 1))
    self.episodes = len(episodes)
    self._openloop = jax.jit(functools.partial(openloop_predict, context=self.context, nets=nets))

    @jax.jit
    def posterior_reward(params, batch, key):
      wm = params['wm']
      post = nets.observe(wm, nets.encode(wm, batch['image']), batch['action'], batch['is_first'], key)
      return nets.predict_reward(wm, post['feat'])

    self._posterior_reward = posterior_reward

  def __call__(self, params, key: jax.Array) -> dict:
    """`params`: the parameters the policy acts with (`agent.acting_params`)."""
    k_diag, k_post = jax.random.split(key)
    out = self.diagnostics(params, None, k_diag)
    b, c = self.batch, self.context
    pred = jax.device_get(self._openloop(params, b))
    true = b['image'][:, c:].astype(np.float32) / 255.0
    out['heldout/openloop_image_mse'] = float(np.mean((pred['pred_image'] - true) ** 2))
    out['heldout/openloop_reward_mae'] = float(np.mean(np.abs(pred['pred_reward'] - b['reward'][:, c:])))
    reward = np.asarray(jax.device_get(self._posterior_reward(params, b, k_post)))
    out['heldout/reward_mae'] = float(np.mean(np.abs(reward[:, 1:] - b['reward'][:, 1:])))
    out['heldout/episodes'] = float(self.episodes)
    return out
