"""Restoring a run's config and train state from its workdir, on any machine (CPU included)."""

from __future__ import annotations

import jax
import ml_collections

from moto_jax import agent, suites
from moto_jax.training import checkpoint as ckpt_lib
from moto_jax.training import config_check


def load_config(workdir: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config_check.load_recorded(workdir).to_dict())


def load_run(workdir: str, step: int | None = None, parts: agent.AgentParts | None = None):
  """Returns `(config, state, counters, step, parts)` of a workdir's checkpoint.

  Pass the run's `parts` (`agent.build`) when they are at hand (evaluating several checkpoints);
  otherwise they are built (the action size from the suite, `suites.action_dim`).
  """
  config = load_config(workdir)
  if parts is None:
    parts = agent.build(config, suites.action_dim(config))
  else:
    differ = [k for k in ('model', 'agent') if parts.config[k].to_dict() != config[k].to_dict()]
    if differ:
      raise ValueError(
        f'The parts given were built from a config whose {" and ".join(differ)} section(s) '
        f'differ from the run in {workdir}; build them from restore.load_config(workdir).'
      )
  template = agent.create_train_state(parts, jax.random.PRNGKey(0))
  checkpointer = ckpt_lib.Checkpointer(workdir)
  try:
    restored = checkpointer.restore(template, step=step)
  finally:
    checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f'No checkpoint in {checkpointer.directory}')
  state, counters, step = restored
  return config, state, counters, step, parts
