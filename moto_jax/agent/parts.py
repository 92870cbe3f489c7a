"""What every function of the agent needs, built once from the config and passed in.

`build(config, action_dim)` makes the networks (`Networks`), the optimizers, the world-model loss
with `config.model`'s settings bound and the actor and critic losses with `config.agent`'s settings
bound (its mode applied once). The jitted update, the refits, acting, the diagnostics and the train
state all take these `AgentParts`; the main job builds them once per run.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import ml_collections

from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.agent.train_state import make_optimizers
from moto_jax.agent.world_model_loss import settings_from as world_model_settings
from moto_jax.agent.world_model_loss import world_model_loss
from moto_jax.networks.world_model import Networks, make_networks


class Losses(NamedTuple):
  """The three losses with their settings bound (`bind_losses`)."""

  world_model: Callable
  actor: Callable
  critic: Callable
  actor_grads: Callable  # the actor's gradient, its two terms combined by agent.balance


def bind_losses(config: ml_collections.ConfigDict) -> Losses:
  """`world_model_loss` with `config.model`'s settings, `actor_loss` and `critic_loss` with those of
  `config.agent` (its mode applied once)."""
  settings = ac_loss.loss_settings(config.agent)
  return Losses(
    functools.partial(world_model_loss, **world_model_settings(config.model)),
    functools.partial(ac_loss.actor_loss, **settings.actor),
    functools.partial(ac_loss.critic_loss, **settings.critic),
    functools.partial(ac_loss.actor_grads, **settings.actor),
  )


@dataclasses.dataclass(frozen=True, eq=False)
class AgentParts:
  """Networks, optimizers and bound losses of one config (see the module docstring)."""

  config: ml_collections.ConfigDict
  nets: Networks
  opts: dict
  losses: Losses

  @property
  def action_dim(self) -> int:
    return self.nets.action_dim


def build(config: ml_collections.ConfigDict, action_dim: int) -> AgentParts:
  """The agent's parts for `config` and an environment with `action_dim` actions."""
  return AgentParts(
    config=config, nets=make_networks(config, action_dim), opts=make_optimizers(config), losses=bind_losses(config)
  )
