"""The main job's refits (agent/refit.py): actor-critic steps on the world model as it stands.

* At the end of the offline phase, `train.refit_steps` steps over the offline episodes.
* After each online episode's updates, `train.online_refit_steps` steps over those offline episodes
  and the latest `MAX_EPISODES` online ones (their `bc_weight`: filtered BC on the successful ones),
  with the world model those updates left.

`Refits` owns the compiled refit loops (one per refit size and padded episode shape) and the choice
of episodes; the Trainer owns the state, the counters and the log, and calls it with them.
"""

from __future__ import annotations

import jax
import numpy as np

from moto_jax.agent import refit as refit_lib
from moto_jax.training import streams

MAX_EPISODES = 50  # episodes of each kind whose posteriors a refit holds in memory


class Refits:
  """Runs the refits of one run on its mesh; see the module docstring."""

  def __init__(self, parts, mesh):
    self.parts, self.mesh = parts, mesh
    self._fns = {}  # compiled refits by (steps, episodes, length)

  def offline_episodes(self, store) -> list[dict]:
    """The offline episodes every refit uses: all, or MAX_EPISODES drawn with the run's seed."""
    episodes = store.episodes('offline')
    if len(episodes) > MAX_EPISODES:
      chosen = np.random.default_rng([self.parts.config.seed, streams.REFIT_EPISODES]).choice(
        len(episodes), MAX_EPISODES, replace=False
      )
      episodes = [episodes[i] for i in sorted(chosen)]
    return episodes

  def online_episodes(self, store, env_steps_planned: int) -> tuple[list[dict], int]:
    """(episodes, capacity) for a refit after an online episode: the offline ones and the latest
    MAX_EPISODES online ones, padded to the count the run will reach (one compile per run)."""
    online = store.episodes('online')[-MAX_EPISODES:]
    episodes = self.offline_episodes(store) + online
    per_episode = max(1, len(online[0]['image']) - 1) if online else 1
    planned = -(-env_steps_planned // per_episode)  # online episodes the run will have
    capacity = max(len(episodes), len(episodes) - len(online) + min(planned, MAX_EPISODES))
    return episodes, capacity

  def run(self, state, steps: int, episodes: list[dict], key: jax.Array, capacity: int | None = None):
    """`steps` refit steps from `state` over `episodes` (padded to `capacity`); returns
    (new state, metrics as floats)."""
    arrays = refit_lib.episode_arrays(episodes, capacity)
    shape = (steps,) + arrays['image'].shape[:2]
    if shape not in self._fns:  # one compile per refit size and padded shape
      self._fns[shape] = refit_lib.make_refit_fn(self.parts, self.mesh, steps=steps)
    state, metrics = self._fns[shape](state, arrays, key)
    return state, {k: float(v) for k, v in jax.device_get(metrics).items()}
