"""MOTO agent: losses, train state, jitted updates, acting and open-loop prediction."""
from moto_jax.agent.actor_critic_loss import actor_loss, critic_loss, real_pairs
from moto_jax.agent.policy import init_carry, make_act_fn, openloop_predict
from moto_jax.agent.returns import lambda_returns, penalised_reward, value_expansion
from moto_jax.agent.train_state import TrainState, acting_params, create_train_state, make_optimizers, param_count
from moto_jax.agent.update import (default_mesh, make_update_fn, make_world_model_update_fn, replicate,
                                   shard_batch, train, train_world_model)
from moto_jax.agent.world_model_loss import kl_balance, world_model_loss
