"""Evaluating a run's checkpoints with the deterministic policy (`launch.evaluate`)."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from moto_jax import agent, suites
from moto_jax.data.rollout import episode_seed
from moto_jax.training import checkpoint as ckpt_lib
from moto_jax.training import evaluation, restore


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
