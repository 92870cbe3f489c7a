"""MOTO agent: losses, train state, jitted updates, acting and open-loop prediction.

`parts = build(config, action_dim)` makes the networks, optimizers and bound losses once; every
factory below takes them: `create_train_state(parts, rng)`, `make_update_fn(parts, mesh)`,
`make_world_model_update_fn(parts, mesh)`, `make_act_fn(parts)`, `refit.make_refit_fn(parts, mesh)`.
"""

from moto_jax.agent.actor_critic_loss import actor_grads, actor_loss, critic_loss, loss_settings, value_loss
from moto_jax.agent.cloning import cloning_loss, cloning_weight, real_pairs
from moto_jax.agent.openloop import openloop_predict
from moto_jax.agent.parts import AgentParts, build
from moto_jax.agent.policy import init_carry, make_act_fn
from moto_jax.agent.returns import lambda_returns, penalised_reward, value_expansion
from moto_jax.agent.sharding import default_mesh, replicate, shard_batch
from moto_jax.agent.train_state import TrainState, acting_params, create_train_state, make_optimizers, param_count
from moto_jax.agent.update import make_update_fn, make_world_model_update_fn, train_step, world_model_step
from moto_jax.agent.world_model_loss import kl_balance, world_model_loss
