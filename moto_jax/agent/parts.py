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
from moto_jax.agent.world_model_loss import loss_settings as world_model_loss_settings, world_model_loss
from moto_jax.networks.world_model import Networks, make_networks


class Losses(NamedTuple):
  """The actor and critic losses with their settings bound (`bind_losses`)."""
  actor: Callable
  critic: Callable


def bind_losses(agent_config: ml_collections.ConfigDict) -> Losses:
  """`actor_loss` and `critic_loss` with the settings of `config.agent` (its mode applied once)."""
  settings = ac_loss.loss_settings(agent_config)
  return Losses(functools.partial(ac_loss.actor_loss, **settings.actor),
                functools.partial(ac_loss.critic_loss, **settings.critic))


@dataclasses.dataclass(frozen=True, eq=False)
class AgentParts:
  """Networks, optimizers and bound losses of one config (see the module docstring)."""
  config: ml_collections.ConfigDict
  nets: Networks
  opts: dict
  world_model_loss: Callable
  losses: Losses

  @property
  def action_dim(self) -> int:
    return self.nets.action_dim

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.nets.image_shape


def image_shape_of(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  return (config.env.image_size, config.env.image_size, 3)


def build(config: ml_collections.ConfigDict, action_dim: int) -> AgentParts:
  """The agent's parts for `config` and an environment with `action_dim` actions."""
  return AgentParts(
      config=config,
      nets=make_networks(config, action_dim, image_shape_of(config)),
      opts=make_optimizers(config),
      world_model_loss=functools.partial(world_model_loss, **world_model_loss_settings(config.model)),
      losses=bind_losses(config.agent))
