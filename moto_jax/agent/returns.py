"""Reward penalty and value targets over an imagined rollout (ALGORITHM.md Secs. 2-5).

Rollouts are time-major: rewards [H, N] (reward k is that of the transition z_k -> z_{k+1}),
values [H+1, N] (value k is min_j Q_j(z_k, a_k)).
"""

import chex
import jax
import jax.numpy as jnp


def penalised_reward(reward: jax.Array, disagreement: jax.Array, penalty_scale: float) -> jax.Array:
  """Eq. 3: r~ = r^(z') - lambda_u * u(z, a). All [H, N]."""
  chex.assert_equal_shape([reward, disagreement])
  return reward - penalty_scale * disagreement


def value_expansion(reward: jax.Array, value: jax.Array, gamma: float) -> tuple[jax.Array, jax.Array]:
  """Mixed-horizon value expansion for every state of a rollout (Eqs. 5 and 7).

  With V^h(z_k) = sum_{i<h} gamma^i r_{k+i} + gamma^h v_{k+h}, for k = 0..H:
    vhat[k]    = mean_{h=0..H-k} V^h(z_k)      (Eq. 5; vhat[0] is Vhat of the start)
    target[k]  = mean_{h=1..H-k} V^h(z_k)      (Eq. 7, k = 0..H-1)
  computed backwards in O(H): with S_k = sum_{h=0..H-k} V^h(z_k) and W_k = S_k - v_k,
    S_H = v_H,   W_k = (H - k) r_k + gamma * S_{k+1},   S_k = v_k + W_k,
  because V^h(z_k) = r_k + gamma V^{h-1}(z_{k+1}) for h >= 1.

  Args: reward [H, N], value [H+1, N] (H static). Returns (vhat [H+1, N], target [H, N]).
  """
  horizon = reward.shape[0]
  chex.assert_shape(value, (horizon + 1,) + reward.shape[1:])
  s = value[horizon]
  vhat, target = [s], []
  for k in reversed(range(horizon)):
    w = (horizon - k) * reward[k] + gamma * s
    target.append(w / (horizon - k))
    s = value[k] + w
    vhat.append(s / (horizon - k + 1))
  vhat = jnp.stack(vhat[::-1])
  target = jnp.stack(target[::-1]) if target else jnp.zeros((0,) + reward.shape[1:], reward.dtype)
  return vhat, target


def value_expansion_targets(reward: jax.Array, value: jax.Array, gamma: float) -> tuple[jax.Array, jax.Array]:
  """MOTO's targets: the actor objective Vhat(z_0) [N] (Eq. 5) and the critic target [H, N] (Eq. 7)."""
  vhat, target = value_expansion(reward, value, gamma)
  return vhat[0], target


def lambda_return_targets(
  reward: jax.Array, value: jax.Array, gamma: float, lambda_: float
) -> tuple[jax.Array, jax.Array]:
  """DreamerV2's targets: the lambda-returns R_0..R_{H-1} [H, N], for the actor and the critic alike."""
  ret = lambda_returns(reward, value, gamma, lambda_)
  return ret, ret


def lambda_returns(reward: jax.Array, value: jax.Array, gamma: float, lambda_: float) -> jax.Array:
  """TD(lambda) returns of DreamerV2: R_H = v_H, R_k = r_k + gamma((1-lambda) v_{k+1} + lambda R_{k+1}).

  Args: reward [H, N], value [H+1, N]. Returns R_0..R_{H-1}: [H, N].
  """
  horizon = reward.shape[0]
  chex.assert_shape(value, (horizon + 1,) + reward.shape[1:])

  def step(ret, inputs):
    r, v_next = inputs
    ret = r + gamma * ((1.0 - lambda_) * v_next + lambda_ * ret)
    return ret, ret

  _, out = jax.lax.scan(step, value[-1], (reward, value[1:]), reverse=True)
  return out
