"""Learning diagnostics, computed at every evaluation (issue: make failures to learn visible).

On the offline dataset's successful episodes (the ones behaviour cloning trains on), with the
posterior of the current world model:

* `diag/action_err_{reset,start,middle,end}`: mean |tanh(mean_pi(z_i)) - a_{i+1}| over action
  dimensions, at the reset step and over the first, middle and last third of the episodes. A
  policy that clones the demos everywhere but at the reset leaves the data at once.
* `diag/action_err_dim_{i}`: the same error per action dimension over all steps (Kitchen: which
  joint, or the gripper, the policy does not clone).
* `diag/q_data`, `diag/return_data`, `diag/q_return_corr`: min_j Q_j(z_i, a_{i+1}) against the
  data's discounted return to the episode's end, sum_k gamma^k r_{i+1+k}, bootstrapped where the
  episode was cut by the time limit (not terminated) with the critic's own value there,
  gamma^(L-1-i) min_j Q_j(z_{L-1}, mode pi(z_{L-1})); and their correlation over steps: is the
  critic calibrated where the data is? (Without the bootstrap, a time-limited episode's late
  steps have small returns only because the episode was cut, and any critic looks uncorrelated.)
* `diag/bc_grad_share`: ||g_BC|| / (||g_BC|| + ||g_MB||) of the actor's loss gradient on one batch,
  with g_BC the gradient of beta_bc * L_BC (Eq. 10; times `agent.bc_final`'s factor at the current
  update) and g_MB that of L_pi_MB (Eq. 6). Near 1 the
  actor only clones; near 0 value expansion drives it.
* `diag/value_update_share`: the value term's share of the actor's parameter update after the
  optimizer (both terms of the gradient scaled per parameter as Adam's state scales them;
  `update.update_share`), and `diag/grad_cos`, the cosine between the value and cloning gradients.
  Near 0 the value term does not move the actor, whatever its gradient's norm.
* `diag/dqda_demo_cos`: on the demos, the cosine between dQ/da at the policy's action and the step
  from there to the demo's action: does the critic point the actor toward the demonstrations (> 0)
  or away from them (< 0)? Read it with care: where the actor fits the demos, that step is the fit's
  residual, which only a critic resolving actions that finely points along (else about 0); and an
  actor that balances Q against cloning tends to stop where dQ/da opposes cloning's pull, i.e.
  points away from the demos (< 0).
* `diag/q_prefers_demo`, `diag/dqda_back_cos`: the critic's action landscape apart from the actor.
  Each demo action is perturbed by Gaussian noise of std `PROBE_STD` (clipped to [-1, 1]): the share
  of demo steps where min_j Q ranks the demo's action above the perturbed one (0.5: no preference),
  and the cosine between dQ/da at the perturbed action and the step back to the demo's action
  (> 0: the critic leads back to the expert). For data from an expert, a critic whose action
  gradient can improve a policy should show both.
* `diag/ve_prefers_demo`, `diag/ve_back_cos` (only with `value_probe`, as `launch.evaluate
  --demo_diagnostics` asks: about eight times the cost of the other demo statistics): the same two
  questions asked of the value expansion V^(z_i) of Eq. 5 (penalised rewards over H imagined steps
  and the critics after them; DreamerV2's lambda-returns averaged over their H starts, as its actor
  loss does), with the first action the demo's or its perturbation and the acting policy's mode
  actions after it (the same prior heads and samples for both). The actor's value term ascends the
  same expansion with the trained actor's sampled actions.
* `diag/imag_return`, `diag/real_return`, `diag/exploit_gap`: on the evaluation episodes, from every
  state with H steps after it, the world model's predicted reward summed over H steps of the acting
  policy's mode actions in imagination, against the rewards the same policy collected in the
  environment over those H steps; a gap that grows while success falls is the policy exploiting the
  model.
* `diag/demo_first_action_{i}`: the demos' mean first action, to read beside the evaluation
  episodes' `eval/first_action_{i}` (logged by the loop).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from moto_jax.agent import actor_critic_loss as ac_loss
from moto_jax.agent import cloning, returns, sharding
from moto_jax.agent import update as update_lib
from moto_jax.data import episodes as ep_lib
from moto_jax.networks import layers
from moto_jax.networks import rssm as rssm_lib

MAX_EPISODES = 16


def _cosine(a: jax.Array, b: jax.Array, b_norm: jax.Array) -> jax.Array:
  """Row-wise cosine of [..., A] vectors, given |b|; 0 where either is 0."""
  return jnp.sum(a * b, -1) / jnp.maximum(jnp.linalg.norm(a, axis=-1) * b_norm, 1e-8)


def _values_and_grads(f, x):
  """f(x) [...] and the gradient of each row's value with respect to its own x [..., A] (f acts row by
  row), from one forward pass."""
  values, vjp = jax.vjp(f, x)
  return values, vjp(jnp.ones_like(values))[0]


PROBE_STD = 0.3  # the demo-action perturbation of `diag/q_prefers_demo` and `diag/dqda_back_cos`
EVAL_EPISODES = 8  # evaluation episodes the model-exploitation diagnostic reads
MIN_LENGTH = 4  # demos shorter than this (steps incl. the reset) are left out


def discounted_returns(reward: np.ndarray, gamma: float) -> np.ndarray:
  """G_i = sum_{k>=0} gamma^k r_{i+1+k} for i = 0..L-2 (truncated at the end); reward [..., L]."""
  out = np.zeros(reward.shape[:-1] + (reward.shape[-1] - 1,), np.float64)
  g = np.zeros(reward.shape[:-1])
  for i in reversed(range(reward.shape[-1] - 1)):
    g = reward[..., i + 1] + gamma * g
    out[..., i] = g
  return out.astype(np.float32)


def demo_episodes(
  episodes: list[dict], max_episodes: int = MAX_EPISODES, gamma: float = 0.99, multiple: int = 1
) -> dict | None:
  """Up to `max_episodes` successful episodes, padded to the longest: arrays [N, L, ...].

  Adds `mask` [N, L-1] (1 on the episode's own pairs i = 0..len-2 that carry the prior), `phase` [N, L-1] (0/1/2: the
  first, middle and last third of each episode's own pairs), `returns` [N, L-1] (the discounted
  return of each episode to its end, computed before padding), `boot` [N, L-1] (the weight
  gamma^(len-1-i) * discount_{len-1} of the value at the episode's last step in the full return)
  and `last` [N] (that step's index). N is padded with empty rows (mask 0) to a
  multiple of `multiple` (the device count), so the rows can be sharded.
  """
  chosen = [e for e in episodes if ep_lib.carries_prior(e) and len(e['image']) >= MIN_LENGTH][:max_episodes]
  if not chosen:
    return None
  length = max(len(e['image']) for e in chosen)
  rows = len(chosen) + (-len(chosen)) % multiple
  first = chosen[0]
  out = {
    k: np.zeros((rows, length) + first[k].shape[1:], first[k].dtype) for k in ('image', 'action', 'reward', 'is_first')
  }
  out['is_first'][:, 0] = True
  for k in ('mask', 'phase', 'returns', 'boot'):
    out[k] = np.zeros((rows, length - 1), np.float32)
  out['last'] = np.zeros(rows, np.int32)
  for n, e in enumerate(chosen):
    steps = len(e['image'])
    for k in ('image', 'action', 'reward', 'is_first'):
      out[k][n, :steps] = e[k]
    out['mask'][n, : steps - 1] = ep_lib.step_weights(e)[:-1] > 0  # the pairs that carry the prior
    for p, idx in enumerate(np.array_split(np.arange(steps - 1), 3)):
      out['phase'][n, idx] = p
    out['returns'][n, : steps - 1] = discounted_returns(np.asarray(e['reward'], np.float64), gamma)
    end_discount = float(np.asarray(e['discount'])[-1]) if 'discount' in e else 1.0
    out['boot'][n, : steps - 1] = gamma ** np.arange(steps - 1, 0, -1) * end_discount
    out['last'][n] = steps - 1
  out['episodes'] = len(chosen)
  return out


class Diagnostics:
  """Builds the jitted diagnostic functions once; `__call__(params, batch, rng)` -> scalars.

  Demo rows and batch rows are sharded over `mesh` (default: every device), like the update's batch.
  """

  def __init__(self, parts, demos: dict | None, mesh=None, value_probe: bool = False):
    self.config = parts.config
    self.value_probe = value_probe
    self.nets = parts.nets
    self.actor_loss = parts.losses.actor
    self.parts = parts
    self.bc_scale = parts.losses.actor.keywords['bc_scale']  # beta_bc after the mode
    self.mesh = mesh if mesh is not None else sharding.default_mesh()
    self.demos = demos
    self.horizon = parts.losses.actor.keywords['horizon']
    self._on_demos = jax.jit(self._demo_stats)
    self._balance = jax.jit(self._balance_stats)
    self._exploit = jax.jit(self._exploit_stats)

  def _demo_stats(self, params, demos, key):
    nets = self.nets
    wm = params['wm']
    post = nets.observe(wm, nets.encode(wm, demos['image']), demos['action'], demos['is_first'], key)
    mode = nets.policy(params['actor'], post['feat']).mode()  # [N, L, A]
    feat = post['feat'][:, :-1]  # z_i, i = 0..L-2
    target = demos['action'][:, 1:]  # a_{i+1}: the action taken at z_i
    err_dims = jnp.abs(mode[:, :-1] - target)  # [N, L-1, A]
    err = jnp.mean(err_dims, -1)  # [N, L-1]
    q = jnp.min(nets.q_values(params['critic'], feat, target), axis=0)  # [N, L-1]
    v = jnp.min(nets.q_values(params['critic'], post['feat'], mode), axis=0)  # [N, L]: for the bootstrap
    # dQ/da at the policy's action, against the step toward the demo's action.
    a_pi = mode[:, :-1]
    dqda = jax.grad(lambda a: jnp.sum(jnp.min(nets.q_values(params['critic'], feat, a), axis=0)))(a_pi)
    toward = target - a_pi
    dist = jnp.linalg.norm(toward, axis=-1)
    cos = _cosine(dqda, toward, dist)
    # The critic's landscape around the demo's action, whatever the actor does (a key of its own,
    # so the statistics above are those of a run without this probe).
    noise = PROBE_STD * jax.random.normal(jax.random.fold_in(key, 1), target.shape)
    probe = jnp.clip(target + noise, -1.0, 1.0)
    q_probe, dqda_probe = _values_and_grads(lambda a: jnp.min(nets.q_values(params['critic'], feat, a), axis=0), probe)
    prefers = (q > q_probe).astype(jnp.float32)
    back = target - probe
    back_dist = jnp.linalg.norm(back, axis=-1)
    back_cos = _cosine(dqda_probe, back, back_dist)
    ve_prefers = ve_back_cos = jnp.zeros_like(prefers)
    if self.value_probe:  # the value expansion (Eq. 5) from z_i with the first action given
      expand = self._expansion(params, post, jax.random.fold_in(key, 2))
      ve_probe, dvda = _values_and_grads(expand, probe)
      ve_prefers = (expand(target) > ve_probe).astype(jnp.float32)
      ve_back_cos = _cosine(dvda, back, back_dist)
    # (Where the policy already takes the demo's action, dQ/da has no direction to be compared with.)
    critic = (prefers, back_cos, ve_prefers, ve_back_cos, back_dist > 1e-3)
    return err, err_dims, q, v, cos, dist > 1e-3, critic

  def _expansion(self, params, post, key):
    """`f(first_action [N, L-1, A]) -> V^(z_i) [N, L-1]`: Eq. 5 from each posterior state z_i
    (i < L-1) whose first imagined action is given, then H-1 steps of the policy's mode actions; the
    prior heads and samples are drawn once, so two calls differ only by their first actions."""
    nets, kw = self.nets, self.actor_loss.keywords
    wm, h = params['wm'], self.horizon
    n, steps = post['deter'].shape[0], post['deter'].shape[1] - 1
    state = {k: post[k][:, :-1].reshape((n * steps,) + post[k].shape[2:]) for k in ('deter', 'stoch')}
    k_member, k_step, k_rest = jax.random.split(key, 3)
    member = jax.random.randint(k_member, (n * steps,), 0, nets.rssm.ensemble)
    mode = lambda p, feat, noise: nets.policy(p, feat).mode()

    def expand(first):
      a0 = first.reshape((n * steps, -1))
      nxt, all_logits = nets.img_step(wm, state, a0, k_step, member)
      feat = [rssm_lib.feature(state)[None], rssm_lib.feature(nxt)[None]]
      action, u = [a0[None]], [layers.ensemble_disagreement(all_logits)[None]]
      if h > 1:
        rest = rssm_lib.imagine(nets.rssm, wm['rssm'], nxt, mode, params['actor'], h - 1, k_rest, nets.action_dim)
        feat.append(rest['feat'][1:])
        action.append(rest['action'])
        u.append(rest['disagreement'])
      else:
        action.append(nets.policy(params['actor'], feat[-1][0]).mode()[None])
      feat, action, u = (jnp.concatenate(x, 0) for x in (feat, action, u))  # [H+1 | H+1 | H, rows, ...]
      reward = returns.penalised_reward(nets.predict_reward(wm, feat[1:]), u, kw['penalty_scale'])
      q = jnp.min(nets.q_values(params['critic'], feat, action), axis=0)
      objective, _ = kw['targets'](reward, q)  # [rows]; DreamerV2's lambda-returns [H, rows]
      if objective.ndim == 2:
        objective = jnp.mean(objective, 0)  # as its actor loss averages them
      return objective.reshape(n, steps)

    return expand

  def _balance_stats(self, params, actor_opt_state, batch, key, step):
    """The actor's two gradients on one batch, each computed alone whatever the mode: their
    cosine; the cloning term's share of their norms as the update at `step` weighs them (with
    `agent.bc_final`'s decay); with the actor's optimizer state, the value term's share of the
    update after Adam."""
    nets, kw = self.nets, self.actor_loss.keywords
    k_obs, k_actor = jax.random.split(key)
    wm = params['wm']
    post = nets.observe(wm, nets.encode(wm, batch['image']), batch['action'], batch['is_first'], k_obs)
    start = {k: post[k].reshape((-1,) + post[k].shape[2:]) for k in ('deter', 'stoch')}
    pairs = cloning.real_pairs(post['feat'], batch)
    value = lambda a: ac_loss.value_loss(
      a,
      nets,
      wm,
      params['critic'],
      start,
      k_actor,
      horizon=kw['horizon'],
      targets=kw['targets'],
      penalty_scale=kw['penalty_scale'],
      entropy_scale=kw['entropy_scale'],
    )[0]
    g_value = jax.grad(value)(params['actor'])
    bc_pairs, keep = cloning.cloning_inputs(
      params['actor'],
      nets,
      params['critic'],
      pairs,
      kw['bc_filter'],
      gamma=kw['gamma'],
      snippet_steps=kw['snippet_steps'],
    )
    g_bc = jax.grad(lambda a: cloning.cloning_loss(a, nets, bc_pairs, bc_eps=kw['bc_eps'], keep=keep)[0])(
      params['actor']
    )
    dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g_value), jax.tree.leaves(g_bc)))
    norms = optax.global_norm(g_value) * optax.global_norm(g_bc)
    terms = ac_loss.balance_terms(
      g_value,
      g_bc,
      balance=kw['balance'],
      value_scale=kw['value_scale'],
      bc_scale=kw['bc_scale'],
      value_share=kw['value_share'],
      bc_weight=update_lib.cloning_weight_at(self.parts, step),
    )
    n_value, n_bc = (optax.global_norm(t) for t in terms)
    out = {
      'diag/bc_grad_share': n_bc / jnp.maximum(n_bc + n_value, 1e-12),
      'diag/grad_cos': jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0),
    }
    if actor_opt_state is not None:  # (without it, as for a checkpoint read alone, there is no update to share)
      out['diag/value_update_share'] = update_lib.update_share(actor_opt_state, terms, self.config.model.eps)
    return out

  def _exploit_stats(self, actor, wm, episodes, key):
    """Predicted against collected reward over H steps from the evaluation episodes' states."""
    nets, h = self.nets, self.horizon
    k_obs, k_imag = jax.random.split(key)
    post = nets.observe(wm, nets.encode(wm, episodes['image']), episodes['action'], episodes['is_first'], k_obs)
    n, length = episodes['reward'].shape
    starts = length - h  # states t = 0..L-1-H have H real steps after them
    start = {k: post[k][:, :starts].reshape((-1,) + post[k].shape[2:]) for k in ('deter', 'stoch')}
    mode = lambda p, feat, noise: nets.policy(p, feat).mode()
    traj = rssm_lib.imagine(nets.rssm, wm['rssm'], start, mode, actor, h, k_imag, nets.action_dim)
    imagined = jnp.sum(nets.predict_reward(wm, traj['feat'][1:]), 0).reshape(n, starts)
    real = sum(episodes['reward'][:, 1 + k : 1 + k + starts] for k in range(h))  # r_{t+1} .. r_{t+H}
    return imagined, real

  def exploitation(self, acting, episodes: list[dict], key) -> dict:
    """`diag/imag_return`, `diag/real_return`, `diag/exploit_gap` on up to EVAL_EPISODES episodes of
    one length (the first ones; a multiple of the device count)."""
    n_dev = self.mesh.devices.size
    length = len(episodes[0]['reward']) if episodes else 0
    same = [e for e in episodes if len(e['reward']) == length][:EVAL_EPISODES]
    same = same[: len(same) - len(same) % n_dev]
    if not same or length <= self.horizon + 1:
      return {}
    arrays = {k: np.stack([e[k] for e in same]) for k in ('image', 'action', 'reward', 'is_first')}
    arrays['reward'] = arrays['reward'].astype(np.float32)
    imagined, real = jax.device_get(
      self._exploit(acting['actor'], acting['wm'], sharding.shard_batch(arrays, self.mesh), key)
    )
    return {
      'diag/imag_return': float(imagined.mean()),
      'diag/real_return': float(real.mean()),
      'diag/exploit_gap': float(imagined.mean() - real.mean()),
    }

  def __call__(
    self,
    params,
    batch: dict | None,
    rng: jax.Array,
    acting: dict | None = None,
    actor_opt_state=None,
    episodes: list[dict] | None = None,
    step: int = 0,
  ) -> dict:
    """`params`: the trained parameters (the gradient terms are the trained actor's); `acting`
    (default `params`): those the policy acts with (`agent.acting_params`), for the demo statistics
    and the evaluation `episodes` it collected; `actor_opt_state`: the actor's optimizer state,
    for the value term's share of the update; `step`: the updates so far (for the cloning
    weight's decay, `agent.bc_final`)."""
    out = {}
    k_demo, k_grad, k_exploit = jax.random.split(rng, 3)
    acting = params if acting is None else acting
    d = self.demos
    if d is not None:
      inputs = sharding.shard_batch({k: d[k] for k in ('image', 'action', 'is_first')}, self.mesh)
      err, err_dims, q, v, cos, apart, critic = jax.device_get(self._on_demos(acting, inputs, k_demo))
      prefers, back_cos, ve_prefers, ve_back_cos, moved = critic
      mask, phase = d['mask'] > 0, d['phase']
      g = d['returns'] + d['boot'] * v[np.arange(len(v)), d['last']][:, None]
      out['diag/action_err_reset'] = float(err[: d['episodes'], 0].mean())
      for p, name in enumerate(('start', 'middle', 'end')):
        out[f'diag/action_err_{name}'] = float(err[mask & (phase == p)].mean())
      for i, e in enumerate(err_dims[mask].mean(axis=0)):  # per action dimension (a joint, the gripper)
        out[f'diag/action_err_dim_{i}'] = float(e)
      qs, gs = q[mask], g[mask]
      out['diag/q_data'] = float(qs.mean())
      out['diag/return_data'] = float(gs.mean())
      out['diag/q_return_corr'] = float(np.corrcoef(qs, gs)[0, 1]) if qs.std() > 0 and gs.std() > 0 else 0.0
      if (mask & apart).any():
        out['diag/dqda_demo_cos'] = float(cos[mask & apart].mean())
      if (mask & moved).any():
        out['diag/q_prefers_demo'] = float(prefers[mask & moved].mean())
        out['diag/dqda_back_cos'] = float(back_cos[mask & moved].mean())
        if self.value_probe:
          out['diag/ve_prefers_demo'] = float(ve_prefers[mask & moved].mean())
          out['diag/ve_back_cos'] = float(ve_back_cos[mask & moved].mean())
      for i, v in enumerate(d['action'][: d['episodes'], 1].mean(0)):
        out[f'diag/demo_first_action_{i}'] = float(v)
    if batch is not None:
      stats = self._balance(params, actor_opt_state, sharding.shard_batch(batch, self.mesh), k_grad, step)
      out.update({k: float(v) for k, v in jax.device_get(stats).items()})
    if episodes:
      out.update(self.exploitation(acting, episodes, k_exploit))
    return out
