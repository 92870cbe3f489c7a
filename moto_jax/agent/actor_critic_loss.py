"""Actor and critic losses on imagined rollouts and real posterior states (Eqs. 3-10).

Both losses are pure functions of arrays and explicit keyword settings; `loss_settings(config.agent)`
applies the agent's mode once and returns them, bound where the update is built:
  `mode='moto'`: mixed-horizon value expansion (Eqs. 5-7), BC prior (Eq. 10), data critic loss (Eq. 8);
  `mode='dreamerv2'`: lambda-returns in imagination; no BC, penalty or L_data.
The value targets are a function `targets(reward [H, N], value [H+1, N]) -> (actor objective,
critic target [H, N])` (`returns.value_expansion_targets` or `returns.lambda_return_targets`).

The real-data pairs and the cloning term (Eq. 10, with its filters and decaying weight) are in
`moto_jax/agent/cloning.py`.
"""

import functools
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from moto_jax.agent import returns
from moto_jax.agent.cloning import cloning_inputs, cloning_loss, is_unit, masked_mean
from moto_jax.networks import layers
from moto_jax.networks import rssm as rssm_lib
from moto_jax.networks.world_model import Networks

sg = jax.lax.stop_gradient


class LossSettings(NamedTuple):
  """Keyword settings of `actor_loss` and `critic_loss`."""

  actor: dict
  critic: dict


def loss_settings(cfg: ml_collections.ConfigDict) -> LossSettings:
  """The losses' settings from `config.agent`, its `mode` applied here and nowhere else."""
  value_scale = 1.0
  if cfg.mode in ('moto', 'bc'):
    targets = functools.partial(returns.value_expansion_targets, gamma=cfg.gamma)
    horizon, penalty_scale, bc_scale, data_critic_loss = (
      cfg.horizon,
      cfg.penalty_scale,
      cfg.bc_scale,
      cfg.data_critic_loss,
    )
    if cfg.mode == 'bc':  # the same stack with the actor's value term off: the cloning baseline
      value_scale = 0.0
  elif cfg.mode == 'dreamerv2':
    targets = functools.partial(returns.lambda_return_targets, gamma=cfg.gamma, lambda_=cfg.lambda_)
    horizon, penalty_scale, bc_scale, data_critic_loss = cfg.dreamer_horizon, 0.0, 0.0, False
  else:
    raise ValueError(f'Unknown agent mode {cfg.mode!r}.')
  return LossSettings(
    actor=dict(
      horizon=horizon,
      targets=targets,
      penalty_scale=penalty_scale,
      bc_scale=bc_scale,
      bc_eps=cfg.bc_eps,
      entropy_scale=cfg.entropy_scale,
      value_scale=value_scale,
      balance=cfg.balance,
      value_share=cfg.value_share,
      # The critic-led filters need the value term; 'all' chooses nothing and holds in mode 'bc' too.
      bc_filter=cfg.bc_filter if (value_scale and cfg.mode == 'moto') or cfg.bc_filter == 'all' else 'none',
      snippet_steps=cfg.snippet_steps,
      gamma=cfg.gamma,
      critic_action_noise=cfg.critic_action_noise,
    ),
    critic=dict(targets=targets, gamma=cfg.gamma, data_critic_loss=data_critic_loss),
  )


def value_loss(
  actor_params,
  nets: Networks,
  wm,
  critic_params,
  start: dict,
  key: jax.Array,
  *,
  horizon: int,
  targets: Callable,
  penalty_scale: float,
  entropy_scale: float,
  critic_action_noise: float = 0.0,
):
  """The actor's model-based term: L_pi_MB (Eq. 6) on H-step imagination from `start`, minus
  entropy_scale times the policy's entropy there. Returns (loss, (metrics, rollout)); with
  critic_action_noise > 0 the rollout also holds `perturbed_transitions` for the critics."""
  k_imag, k_ent = jax.random.split(key)
  traj = nets.imagine(wm, start, actor_params, horizon, k_imag)
  reward = nets.predict_reward(wm, traj['feat'][1:])  # r^(z_{k+1}) [H, N]
  reward = returns.penalised_reward(reward, traj['disagreement'], penalty_scale)  # Eq. 3
  q = jnp.min(nets.q_values(critic_params, traj['feat'], traj['action']), axis=0)  # [H+1, N]
  objective, _ = targets(reward, q)  # Eq. 5: Vhat(z_0)
  mb_loss = -jnp.mean(objective)  # Eq. 6
  # Entropy estimate on the imagined states (regulariser; entropy_scale = 0 by default).
  _, sample_logp = nets.policy(actor_params, sg(traj['feat'][:-1])).sample_and_log_prob(k_ent)
  entropy = -jnp.mean(sample_logp)
  metrics = {
    'actor/mb_loss': mb_loss,
    'actor/entropy': entropy,
    'actor/vhat_abs': jnp.mean(jnp.abs(objective)),
    'actor/penalty': jnp.mean(traj['disagreement']),
    'actor/imag_reward': jnp.mean(reward),
  }
  rollout = sg({'feat': traj['feat'], 'action': traj['action'], 'reward': reward})
  if critic_action_noise:
    k_pert = jax.random.fold_in(key, 1)
    rollout['perturbed'] = perturbed_transitions(
      nets, wm, traj, k_pert, noise=critic_action_noise, penalty_scale=penalty_scale
    )
  return mb_loss - entropy_scale * entropy, (metrics, rollout)


def perturbed_transitions(nets: Networks, wm, traj: dict, key: jax.Array, *, noise: float, penalty_scale: float):
  """One imagined step from each imagined state z_k (k < H) under a perturbed action
  a~_k = clip(a_k + noise * eps, -1, 1): the critics' training pairs off the policy's own actions
  (`agent.critic_action_noise`; docs/ALGORITHM.md Sec. 6c).

  The rollout's critics see only the actions the policy takes, so nothing trains how Q changes with
  the action, and dQ/da, the Q-filter and the advantage weights read an untrained direction. Here the
  world model says what a different action leads to: z~_{k+1} from the GRU step and a prior head
  drawn at random, and the penalised reward r^(z~_{k+1}) - lambda_u u(z_k, a~_k) (Eq. 3).
  Returns stopped {'feat' [H*N, F], 'action' [H*N, A], 'reward' [H*N], 'next_feat' [H*N, F]}.
  """
  flat = lambda x: sg(x[:-1]).reshape((-1,) + x.shape[2:])  # the H states with an action after them
  state = {'deter': flat(traj['deter']), 'stoch': flat(traj['stoch'])}
  action = flat(traj['action'])
  k_noise, k_member, k_step = jax.random.split(key, 3)
  action = jnp.clip(action + noise * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
  member = jax.random.randint(k_member, action.shape[:1], 0, nets.rssm.ensemble)
  nxt, all_logits = nets.img_step(wm, state, action, k_step, member)
  next_feat = rssm_lib.feature(nxt)
  u = layers.ensemble_disagreement(all_logits)  # Eq. 2
  reward = returns.penalised_reward(nets.predict_reward(wm, next_feat), u, penalty_scale)
  return sg({'feat': rssm_lib.feature(state), 'action': action, 'reward': reward, 'next_feat': next_feat})


def actor_loss(
  actor_params,
  nets: Networks,
  wm,
  critic_params,
  start: dict,
  pairs: dict,
  key: jax.Array,
  *,
  horizon: int,
  targets: Callable,
  penalty_scale: float,
  bc_scale: float,
  bc_eps: float,
  entropy_scale: float,
  value_scale: float = 1.0,
  balance: str = 'fixed',
  value_share: float = 0.5,
  bc_filter: str = 'none',
  snippet_steps: int = 10,
  gamma: float = 0.99,
  critic_action_noise: float = 0.0,
):
  """L_pi = value_scale * L_pi_MB + beta_bc * L_BC (Eqs. 6 and 10), as one scalar.

  Gradients reach only `actor_params`; they flow through the world model's and the critics'
  activations, whose parameters are fixed here. The update takes the two terms' gradients apart
  (`actor_grads`), which for `balance='fixed'` (and `bc_weight` 1) sums them exactly as this loss does.

  Args: start state with rows [N] (stop-gradiented posterior states); pairs from `cloning.real_pairs`;
    horizon H of the imagination; targets (module docstring; its actor objective: Vhat of Eq. 5);
    penalty_scale lambda_u (Eq. 3); bc_scale beta_bc (Eq. 10); bc_eps (the BC log-density's clip
    of saturated actions, `TanhGaussian.log_prob`); entropy_scale (a regulariser, 0 by default);
    value_scale: 1 (MOTO), 0 (mode 'bc'). `balance` and `value_share` act on gradients only.
    bc_filter: 'none' (Eq. 10), 'q' (cloning weighted by `cloning.q_filter`), 'advantage'
      (`cloning.advantage_weights`) or 'snippets' (`cloning.snippet_advantage` over `snippet_steps`
      steps at discount `gamma` widens what is cloned), all from `critic_params`.
    critic_action_noise: > 0 adds `perturbed_transitions` to the rollout (the critics' only).
  Returns (loss, (metrics, rollout)) where rollout holds the stopped 'feat' [H+1, N, F],
    'action' [H+1, N, A] and penalised 'reward' [H, N] for the critics.
  """
  del balance, value_share
  value, (metrics, rollout) = value_loss(
    actor_params,
    nets,
    wm,
    critic_params,
    start,
    key,
    horizon=horizon,
    targets=targets,
    penalty_scale=penalty_scale,
    entropy_scale=entropy_scale,
    critic_action_noise=critic_action_noise,
  )
  bc_pairs, keep = cloning_inputs(
    actor_params, nets, critic_params, pairs, bc_filter, gamma=gamma, snippet_steps=snippet_steps
  )
  bc_loss, bc_metrics = cloning_loss(actor_params, nets, bc_pairs, bc_eps=bc_eps, keep=keep)
  loss = value_scale * value + bc_scale * bc_loss
  return loss, ({'actor/loss': loss, **metrics, **bc_metrics}, rollout)


def _is_zero(weight) -> bool:
  """True where `weight` is the Python constant 0.0: that summand is left out of the traced graph."""
  return isinstance(weight, float) and weight == 0.0


def balance_terms(
  g_value, g_bc, *, balance: str, value_scale: float, bc_scale: float, value_share: float, bc_weight=1.0
):
  """The two summands of the actor's gradient from the value and cloning gradients (`actor_grads`);
  `bc_weight` (`cloning.cloning_weight`) scales the cloning summand after the balance."""
  if balance == 'fixed':
    w_value, w_bc = value_scale, bc_scale
  elif balance == 'share':
    # With one term off (mode 'bc', or bc_scale 0: "No BC"), the other takes the whole direction.
    share = value_share if (value_scale and bc_scale) else float(bool(value_scale))
    w_value = share / jnp.maximum(optax.global_norm(g_value), 1e-12) if value_scale else 0.0
    w_bc = (1.0 - share) / jnp.maximum(optax.global_norm(g_bc), 1e-12) if bc_scale else 0.0
  else:
    raise ValueError(f'Unknown agent.balance {balance!r}')
  if not is_unit(bc_weight) and not _is_zero(w_bc):
    w_bc = w_bc * bc_weight
  scaled = lambda w, g: jax.tree.map(lambda x: w * x, g)
  zero = lambda g: jax.tree.map(jnp.zeros_like, g)  # not 0 * g: a non-finite term must not leak in
  return (
    zero(g_value) if _is_zero(w_value) else scaled(w_value, g_value),
    zero(g_bc) if _is_zero(w_bc) else scaled(w_bc, g_bc),
  )


def actor_grads(
  actor_params,
  nets: Networks,
  wm,
  critic_params,
  start: dict,
  pairs: dict,
  key: jax.Array,
  *,
  horizon: int,
  targets: Callable,
  penalty_scale: float,
  bc_scale: float,
  bc_eps: float,
  entropy_scale: float,
  value_scale: float = 1.0,
  balance: str = 'fixed',
  value_share: float = 0.5,
  bc_filter: str = 'none',
  snippet_steps: int = 10,
  gamma: float = 0.99,
  critic_action_noise: float = 0.0,
  bc_weight=1.0,
):
  """The actor's gradient, its value and cloning terms computed apart and combined by `balance`:

  * 'fixed' (the paper): value_scale * g_MB + beta_bc * g_BC, the gradient of `actor_loss`.
  * 'share': value_share * g_MB / |g_MB| + (1 - value_share) * g_BC / |g_BC|: the value term's
    share of the gradient's direction is `value_share`, whatever the scale of rewards, Q or the
    policy's sigma (mode 'bc' keeps value_scale 0: cloning alone).
  With a bc_filter, g_BC is the gradient of the filtered cloning loss (`cloning.cloning_inputs`). The cloning
  summand is then scaled by `bc_weight` (a traced scalar from `cloning.cloning_weight`, or 1.0).

  Returns (grads, metrics, rollout, terms) with terms = (value part, cloning part) of `grads`, the
  two summands, for the update-share diagnostic.
  """
  value_fn = functools.partial(
    value_loss,
    nets=nets,
    wm=wm,
    critic_params=critic_params,
    start=start,
    key=key,
    horizon=horizon,
    targets=targets,
    penalty_scale=penalty_scale,
    entropy_scale=entropy_scale,
    critic_action_noise=critic_action_noise,
  )
  zeros = jax.tree.map(jnp.zeros_like, actor_params)
  if value_scale:
    (value, (metrics, rollout)), g_value = jax.value_and_grad(value_fn, has_aux=True)(actor_params)
  else:  # mode 'bc': the rollout feeds the critics; no gradient through imagination
    value, (metrics, rollout) = value_fn(actor_params)
    g_value = zeros
  bc_pairs, keep = cloning_inputs(
    actor_params, nets, critic_params, pairs, bc_filter, gamma=gamma, snippet_steps=snippet_steps
  )
  (bc_loss, bc_metrics), g_bc = jax.value_and_grad(cloning_loss, has_aux=True)(
    actor_params, nets, bc_pairs, bc_eps=bc_eps, keep=keep
  )
  n_value, n_bc = optax.global_norm(g_value), optax.global_norm(g_bc)
  terms = balance_terms(
    g_value,
    g_bc,
    balance=balance,
    value_scale=value_scale,
    bc_scale=bc_scale,
    value_share=value_share,
    bc_weight=bc_weight,
  )
  grads = jax.tree.map(jnp.add, *terms)
  metrics = {'actor/loss': value_scale * value + bc_weight * bc_scale * bc_loss, **metrics, **bc_metrics}
  if not is_unit(bc_weight):
    metrics['actor/bc_weight'] = bc_weight
  if value_scale:
    dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g_value), jax.tree.leaves(g_bc)))
    norms = n_value * n_bc
    metrics['actor/grad_cos'] = jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)
  return grads, metrics, rollout, terms


def one_step_target(nets: Networks, actor_params, target_params, reward, discount, next_feat, key, gamma: float):
  """Eq. 8's target r + gamma * d * min_j Qbar_j(z', a') with a' ~ pi(z') drawn with `key`."""
  a_next = nets.policy(actor_params, next_feat).sample(key)
  return reward + gamma * discount * jnp.min(nets.q_values(target_params, next_feat, a_next), axis=0)


def critic_loss(
  critic_params,
  nets: Networks,
  target_params,
  actor_params,
  rollout: dict,
  pairs: dict,
  key: jax.Array,
  *,
  targets: Callable,
  gamma: float,
  data_critic_loss: bool,
):
  """L_critic = L_model (Eq. 7) + L_data (Eq. 8) (Eq. 9); targets from the target critics.

  The critics see stopped states: no gradient reaches the world model or the actor.
  Args: rollout from `actor_loss`; pairs from `cloning.real_pairs`; targets (module docstring; its critic
    target: y of Eq. 7); gamma (Eq. 8's bootstrap); data_critic_loss (add L_data). Returns (loss, metrics).
  Where the rollout holds `perturbed_transitions` (agent.critic_action_noise > 0), L_perturbed is
  added: sum_j mean (Q_j(z_k, a~_k) - y~)^2 with y~ = r~ + gamma min_j Qbar_j(z~_{k+1}, a'),
  a' ~ pi(z~_{k+1}), the one-step target of Eq. 8 on the world model's transition.
  """
  feat, action, reward = sg(rollout['feat']), sg(rollout['action']), sg(rollout['reward'])
  horizon = reward.shape[0]
  chex.assert_shape(feat, (horizon + 1, None, None))
  qbar = jnp.min(nets.q_values(target_params, feat, action), axis=0)  # [H+1, N]
  _, target = targets(reward, qbar)  # y of Eq. 7
  q_imag = nets.q_values(critic_params, feat[:-1], action[:-1])  # [2, H, N]
  model_loss = jnp.sum(jnp.mean((q_imag - sg(target)) ** 2, axis=(1, 2)))

  z = sg(pairs['feat'])
  q_data = nets.q_values(critic_params, z, pairs['action'])  # Q_j(z_i, a_{i+1}) [2, B, T-1]
  metrics = {
    'critic/model_loss': model_loss,
    'critic/q_imag': jnp.mean(q_imag),
    'critic/target_imag': jnp.mean(target),
    'critic/q_data': masked_mean(jnp.mean(q_data, 0), pairs['mask']),
  }
  loss = model_loss
  if data_critic_loss:  # Eq. 8
    z_next = sg(pairs['next_feat'])
    y = one_step_target(nets, actor_params, target_params, pairs['reward'], pairs['discount'], z_next, key, gamma)
    data_loss = jnp.sum(jax.vmap(masked_mean, (0, None))((q_data - sg(y)) ** 2, pairs['mask']))
    loss = loss + data_loss
    metrics.update({'critic/data_loss': data_loss, 'critic/target_data': masked_mean(y, pairs['mask'])})
  if 'perturbed' in rollout:
    p = sg(rollout['perturbed'])
    y = one_step_target(
      nets, actor_params, target_params, p['reward'], 1.0, p['next_feat'], jax.random.fold_in(key, 1), gamma
    )
    q_pert = nets.q_values(critic_params, p['feat'], p['action'])  # [2, H*N]
    pert_loss = jnp.sum(jnp.mean((q_pert - sg(y)) ** 2, axis=1))
    loss = loss + pert_loss
    q_own = jnp.mean(q_imag, 0).reshape(-1)  # Q at the policy's own actions, the same states
    metrics.update(
      {
        'critic/perturbed_loss': pert_loss,
        'critic/target_perturbed': jnp.mean(y),
        # How much Q varies with the action: mean |Q(z, a) - Q(z, a~)| (0 for a critic blind to it).
        'critic/action_gap': jnp.mean(jnp.abs(q_own - jnp.mean(q_pert, 0))),
      }
    )
  metrics['critic/loss'] = loss
  return loss, metrics
