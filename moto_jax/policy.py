"""A trained policy to deploy: `Policy.load(workdir)`, then `reset()` and `act(image)` per step.

    from moto_jax import Policy
    policy = Policy.load('runs/drawer')            # the run's latest checkpoint, on any machine
    policy.reset()                                  # at every episode start
    action = policy.act(image)                      # uint8 [64, 64, 3] -> float32 [A]

The recurrent state (the world model's posterior and the previous action) is kept inside; one
jitted step per call, on the default JAX device (CPU or GPU). It acts as evaluation does: the
policy's mode (`explore=True`: as the run explored), with the averaged actor where the run keeps one.
Actions are in [-1, 1], or in the robot's own units where the run's offline data were converted with
an action scale (`launch.convert` records it in the dataset's manifest): then [-1, 1] maps back to
[low, high] per dimension.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from moto_jax import agent
from moto_jax.agent import policy as policy_lib


class Policy:
  """Acts from camera images with a run's checkpoint; see the module docstring."""

  def __init__(
    self,
    config,
    params,
    parts,
    step: int | None = None,
    seed: int = 0,
    explore: bool = False,
    action_scale: dict | None = None,
  ):
    self.config, self.parts, self.step = config, parts, step
    self.action_scale = action_scale  # {'low': [...], 'high': [...]} or None ([-1, 1])
    self.action_dim = parts.action_dim
    self.image_shape = tuple(parts.nets.image_shape)
    self.explore = bool(explore)
    self._params = params
    self._act = policy_lib.make_act_fn(parts)
    self._seed = seed
    self.reset()

  @classmethod
  def load(cls, workdir: str, step: int | None = None, seed: int = 0, explore: bool = False) -> Policy:
    """The policy of `workdir`'s checkpoint `step` (default: the latest). `seed` seeds the posterior's
    samples (and the exploration noise with `explore=True`)."""
    from moto_jax.data import manifest as manifest_lib
    from moto_jax.training import restore

    config, state, _, step, parts = restore.load_run(workdir, step)
    manifest = manifest_lib.read_manifest(os.path.expanduser(config.data.dir)) if config.data.dir else None
    scale = (manifest or {}).get('action_scale')
    return cls(config, agent.acting_params(state), parts, step=step, seed=seed, explore=explore, action_scale=scale)

  def reset(self) -> None:
    """Starts an episode: the next `act` begins from a fresh recurrent state."""
    self._carry = policy_lib.init_carry(self.config, 1, self.action_dim)
    self._first = True
    self._key = jax.random.PRNGKey(self._seed)

  def act(self, image: np.ndarray) -> np.ndarray:
    """The action for this step's camera image (uint8, `image_shape`): float32 [action_dim] in [-1, 1]."""
    image = np.asarray(image)
    if image.shape != self.image_shape or image.dtype != np.uint8:
      raise ValueError(
        f'image of shape {image.shape} and dtype {image.dtype}; this policy was trained on uint8 images '
        f'of shape {self.image_shape} (config.env.image_size)'
      )
    self._key, sub = jax.random.split(self._key)
    self._carry, action = self._act(
      self._params, self._carry, image[None], np.array([self._first]), sub, explore=self.explore
    )
    self._first = False
    action = np.asarray(action[0])
    if self.action_scale is None:
      return action
    low, high = (np.asarray(self.action_scale[k], np.float32) for k in ('low', 'high'))
    return low + (action + 1.0) * 0.5 * (high - low)
