"""Evaluating a run's checkpoints with the deterministic policy (`launch.evaluate`)."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from moto_jax import agent, suites
from moto_jax.data import episodes as ep_lib
from moto_jax.data.rollout import episode_seed
from moto_jax.training import checkpoint as ckpt_lib
from moto_jax.training import diagnostics, evaluation, offline_data, restore

# The demo statistics `demo_diagnostics` prints, in this order (moto_jax/training/diagnostics.py).
DEMO_KEYS = (
  'diag/action_err_reset',
  'diag/action_err_start',
  'diag/action_err_middle',
  'diag/action_err_end',
  'diag/q_return_corr',
  'diag/dqda_demo_cos',
  'diag/q_prefers_demo',
  'diag/dqda_back_cos',
  'diag/ve_prefers_demo',
  'diag/ve_back_cos',
)


def checkpoint_steps(workdir: str, all_checkpoints: bool, step: int | None) -> list[int | None]:
  """[step] (None: the latest), or every checkpoint kept in the workdir, oldest first."""
  if not all_checkpoints:
    return [step]
  checkpointer = ckpt_lib.Checkpointer(workdir)
  try:
    steps = checkpointer.all_steps()
  finally:
    checkpointer.close()
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {checkpointer.directory}')
  return steps


def evaluate_checkpoints(
  workdir: str,
  steps: list[int | None],
  episodes: int = 10,
  envs: int = 10,
  seed_offset: int = 5_000_000,
  video: bool = False,
  log=print,
  explore: bool = False,
) -> list[dict]:
  """Evaluates each checkpoint over `episodes` episodes from start seeds `episode_seed(seed,
  seed_offset + k)` (never used in training), `envs` environments in lock step; one compile for all.
  Writes `<workdir>/evaluate_<step>.json` (`evaluate_explore_<step>.json` with `explore`: the policy
  acting as in the exploring episodes), and a GIF with `video`; returns those records."""
  config = restore.load_config(workdir)
  env_list = [suites.make_env(config) for _ in range(max(1, min(envs, episodes)))]
  try:
    parts = agent.build(config, int(env_list[0].action_space.shape[0]))
    actor = evaluation.AgentActor(parts)
    return [
      _evaluate_one(workdir, parts, actor, env_list, step, episodes, seed_offset, video, log, explore) for step in steps
    ]
  finally:
    for env in env_list:
      env.close()


def _evaluate_one(workdir, parts, actor, envs, step, episodes, seed_offset, video, log, explore=False) -> dict:
  config, state, counters, step, _ = restore.load_run(workdir, step, parts)
  log(f'Restored checkpoint {step} of {workdir}: {counters.to_json()}')
  seeds = [episode_seed(config.seed, seed_offset + k) for k in range(episodes)]
  start = time.perf_counter()
  summary, eps = evaluation.evaluate(
    actor, envs, agent.acting_params(state), seeds, jax.random.PRNGKey(seed_offset), explore=explore
  )
  name = 'evaluate_explore' if explore else 'evaluate'
  rate = summary['eval/success_rate']
  log(
    f'Checkpoint {step} ({counters.grad_steps} gradient steps, {counters.env_steps} env steps'
    f'{", exploring policy" if explore else ""}): '
    f'success rate {rate:.2f} ({int(round(rate * len(eps)))}/{len(eps)} episodes), '
    f'mean return {summary["eval/return"]:.1f}; {time.perf_counter() - start:.0f} s with '
    f'{len(envs)} environment(s) in lock step'
  )
  if 'eval/tasks_completed' in summary:  # Kitchen: each target, completed and how far it came
    targets = [k[len('eval/task_') :] for k in summary if k.startswith('eval/task_')]
    log(
      f'  target tasks per episode {summary["eval/tasks_completed"]:.2f}; completed (progress toward the goal): '
      + ', '.join(
        f'{t.replace("_", " ")} {summary[f"eval/task_{t}"]:.2f} ({summary.get(f"eval/progress_{t}", float("nan")):.2f})'
        for t in targets
      )
    )
  if video:
    path = evaluation.write_video(
      np.concatenate([e['image'] for e in eps]), os.path.join(workdir, 'videos', f'{name}_{step}.gif')
    )
    log(f'Video: {path}')
  record = dict(
    step=step,
    counters=counters.to_json(),
    episodes=len(eps),
    explore=explore,
    **summary,
    successes=[bool(e['success']) for e in eps],
  )
  with open(os.path.join(workdir, f'{name}_{step}.json'), 'w') as f:
    json.dump(record, f, indent=2)
  return record


def demo_diagnostics(workdir: str, steps: list[int | None], log=print, data_dir: str | None = None) -> list[dict]:
  """The actor's and the critic's statistics on the run's offline demonstrations at each checkpoint
  (`training.diagnostics`, as a run logs them at an evaluation: the action error by phase, Q against
  the data's returns, dQ/da against the demos, and the critic's landscape around the demo actions).
  The demos are the episodes that carry the behaviour prior in the run's offline dataset (all of
  them, also where the run trained on a subset), or in `data_dir`. Writes
  `<workdir>/demo_diagnostics_<step>.json`; returns those records."""
  config = restore.load_config(workdir)
  parts = agent.build(config, suites.action_dim(config))
  data_dir = data_dir or offline_data.resolve(config, log=log)
  demos = diagnostics.demo_episodes(
    [ep_lib.load_episode(f) for f in ep_lib.episode_files(data_dir)],
    gamma=config.agent.gamma,
    multiple=jax.device_count(),
  )
  if demos is None:
    raise ValueError(f'{data_dir} holds no episode that carries the behaviour prior: no demos to diagnose on')
  diag = diagnostics.Diagnostics(parts, demos, value_probe=True)
  records = []
  for step in steps:
    _, state, counters, step, _ = restore.load_run(workdir, step, parts)
    out = diag(state.params, None, jax.random.PRNGKey(0), acting=agent.acting_params(state))
    stats = {k: out[k] for k in DEMO_KEYS if k in out}
    log(
      f'Checkpoint {step} ({counters.grad_steps} gradient steps, {counters.env_steps} env steps), '
      f'{demos["episodes"]} demos: ' + ', '.join(f'{k.removeprefix("diag/")} {v:.3f}' for k, v in stats.items())
    )
    record = dict(step=step, counters=counters.to_json(), demos=int(demos['episodes']), **out)
    with open(os.path.join(workdir, f'demo_diagnostics_{step}.json'), 'w') as f:
      json.dump(record, f, indent=2)
    records.append(record)
  return records
