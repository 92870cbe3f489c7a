r"""Is it the representation or the actor? Retrain only the actor of a finished (or checkpointed) run.

The run's world model and critics are frozen at its latest checkpoint. The posterior states of the
offline dataset's successful episodes are computed once; the actor then takes `--steps` Adam steps
from the checkpoint's actor on windows of them (B x T as in the run, edge-clamped starts), with
either BC alone (`--loss=bc`, Eq. 10) or the full MOTO actor loss (`--loss=moto`: value expansion
through the frozen model and critics, Eq. 6, plus `--bc_scale` x Eq. 10), and is evaluated for
`--episodes` deterministic episodes from start seeds never used in training.

  python -m launch.probe --workdir=runs/learning/drawer-open/seed0 --loss=bc --steps=300
  python -m launch.probe --workdir=runs/learning/drawer-open/seed0 --loss=moto --bc_scale=1 --steps=300

If BC alone on frozen features solves the task while the run's own actor does not, the world
model's representation is sufficient and the actor's objective or training is what fails.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from moto_jax import agent
from moto_jax.agent import cloning
from moto_jax.agent import refit as refit_lib
from moto_jax.data import episodes as ep_lib
from moto_jax.data.rollout import episode_seed
from moto_jax.suites import make_env
from moto_jax.training import config_check, diagnostics, evaluation, offline_data, restore


def run(
  workdir: str,
  loss: str = 'bc',
  bc_scale: float | None = None,
  steps: int = 300,
  episodes: int = 10,
  lr: float | None = None,
  overrides: tuple[str, ...] = (),
  step: int | None = None,
  reinit: bool = False,
  eval_checkpoint_actor: bool = False,
  log=print,
) -> dict:
  """Trains the actor alone on the frozen model of `workdir`'s checkpoint `step` (default: the
  latest) and evaluates it; returns {'success_rate', 'first_action', 'seconds'}. `overrides`:
  agent config fields for the probe ('penalty_scale=10'). See the module docstring."""
  args = argparse.Namespace(
    workdir=workdir,
    loss=loss,
    bc_scale=bc_scale,
    steps=steps,
    episodes=episodes,
    lr=lr,
    set=list(overrides),
    step=step,
    reinit=reinit,
    eval_checkpoint_actor=eval_checkpoint_actor,
  )

  recorded = restore.load_config(args.workdir)
  env = make_env(recorded)
  action_dim = int(env.action_space.shape[0])
  config, state, counters, step, _ = restore.load_run(args.workdir, args.step, agent.build(recorded, action_dim))
  config = config.unlock()
  if args.bc_scale is not None:
    config.agent.bc_scale = args.bc_scale
  for item in args.set:
    config_check.override(config, item, prefix='agent')
  params = jax.device_get(state.params)
  parts = agent.build(config, action_dim)  # with the probe's overrides
  nets = parts.nets
  data_dir = offline_data.resolve(config, log=lambda *a: None)
  demos = diagnostics.demo_episodes([ep_lib.load_episode(f) for f in ep_lib.episode_files(data_dir)], max_episodes=1000)
  wm = params['wm']
  post = jax.jit(nets.observe)(
    wm, jax.jit(nets.encode)(wm, demos['image']), demos['action'], demos['is_first'], jax.random.key(0)
  )
  n, length = demos['action'].shape[:2]
  b, t = config.train.batch_size, min(config.train.seq_len, length)
  arrays = {
    k: jnp.asarray(v)
    for k, v in dict(
      deter=post['deter'], stoch=post['stoch'], feat=post['feat'], action=demos['action'], reward=demos['reward']
    ).items()
  }
  lengths = jnp.asarray(demos['mask'].sum(1) + 1, jnp.int32)[: demos['episodes']]
  cfg = config.agent
  opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(args.lr or cfg.actor_lr))

  def loss_fn(actor, key):
    k_windows, k_loss = jax.random.split(key)
    ep, idx = refit_lib.sample_windows(k_windows, lengths, b, t)
    take = lambda a: a[ep[:, None], idx]
    batch = {
      'action': take(arrays['action']),
      'reward': take(arrays['reward']),
      'discount': jnp.ones((b, t)),
      'is_first': idx == 0,
      'bc_weight': jnp.ones((b, t)),
    }
    pairs = cloning.real_pairs(take(arrays['feat']), batch)
    if args.loss == 'bc':
      logp = nets.policy(actor, pairs['feat']).log_prob(pairs['action'], cfg.bc_eps)
      return cloning.masked_mean(-logp, pairs['mask'])
    starts = {
      'deter': take(arrays['deter']).reshape(b * t, -1),
      'stoch': take(arrays['stoch']).reshape((b * t,) + arrays['stoch'].shape[2:]),
    }
    loss, _ = parts.losses.actor(actor, nets, wm, params['critic'], starts, pairs, k_loss)
    return loss

  @jax.jit
  def train(actor, key):
    def step(carry, k):
      actor, opt_state = carry
      updates, opt_state = opt.update(jax.grad(loss_fn)(actor, k), opt_state, actor)
      return (optax.apply_updates(actor, updates), opt_state), None

    (actor, _), _ = jax.lax.scan(step, (actor, opt.init(actor)), jax.random.split(key, args.steps))
    return actor

  agent_actor = evaluation.AgentActor(parts)
  seeds = [episode_seed(config.seed, 5_000_000 + k) for k in range(args.episodes)]

  fmt = lambda v: '[' + ', '.join(f'{x:+.2f}' for x in np.asarray(v)) + ']'

  def report(actor, label):
    summary, episodes = evaluation.evaluate(agent_actor, env, {**params, 'actor': actor}, seeds, jax.random.key(5))
    first = np.mean([e['action'][1] for e in episodes], 0)
    log(
      f'{label}: success {summary["eval/success_rate"]:.2f} over {len(episodes)} episodes; '
      f'first action {fmt(first)} (demos {fmt(demos["action"][: demos["episodes"], 1].mean(0))})',
    )
    return summary['eval/success_rate'], first

  log(
    f'{args.workdir}: checkpoint {step} ({counters.grad_steps} gradient steps, {counters.env_steps} env steps); '
    f'{demos["episodes"]} demos'
  )
  if args.eval_checkpoint_actor:
    report(params['actor'], "run's own actor")
  t0 = time.time()
  start = params['actor']
  if args.reinit:
    start = nets.init(jax.random.key(1))['actor']
  actor = jax.block_until_ready(train(start, jax.random.key(0)))  # compile + all steps, not only dispatch
  label = 'BC alone' if args.loss == 'bc' else f'MOTO actor loss, bc_scale {cfg.bc_scale:g}'
  origin = 'fresh actor' if args.reinit else "the run's actor"
  seconds = time.time() - t0
  rate, first = report(
    actor, f'{label}, {args.steps} steps from {origin} at lr {args.lr or cfg.actor_lr:g} ({seconds:.0f} s)'
  )
  env.close()
  return dict(success_rate=rate, first_action=[float(x) for x in first], seconds=seconds)
