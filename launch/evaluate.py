r"""Evaluates a run's checkpoint with the deterministic policy.

  python -m launch.evaluate --workdir=runs/drawer-open [--episodes 20] [--video] [--step N | --all_checkpoints]

Works on any machine (CPU included). Episodes start from seeds never used in training and run
`--envs` at a time in lock step. `--all_checkpoints` evaluates every checkpoint kept in the workdir
(a learning curve over gradient steps) and prints one line per checkpoint.
"""
import json
import os
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault('MUJOCO_GL', 'egl')

import jax  # noqa: E402
import numpy as np  # noqa: E402

from moto_jax import agent  # noqa: E402
from moto_jax.data.rollout import episode_seed  # noqa: E402
from moto_jax.suites import make_env  # noqa: E402
from moto_jax.training import checkpoint as ckpt_lib  # noqa: E402
from moto_jax.training import evaluation, restore  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a run.', required=True)
_EPISODES = flags.DEFINE_integer('episodes', 10, 'Evaluation episodes.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_ALL = flags.DEFINE_bool('all_checkpoints', False, 'Evaluate every checkpoint in the workdir, oldest first.')
_ENVS = flags.DEFINE_integer('envs', 10, 'Environments run in lock step (one batched policy call per step).')
_VIDEO = flags.DEFINE_bool('video', False, 'Write a GIF of the episodes to <workdir>/videos/.')
_SEED = flags.DEFINE_integer('seed', 5_000_000, 'Start-seed offset of the evaluation episodes.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = restore.load_config(_WORKDIR.value)
  steps = [_STEP.value]
  if _ALL.value:
    checkpointer = ckpt_lib.Checkpointer(_WORKDIR.value)
    steps = checkpointer.all_steps()
    checkpointer.close()
    if not steps:
      raise app.UsageError(f'No checkpoint in {_WORKDIR.value}')
  envs = [make_env(config) for _ in range(max(1, min(_ENVS.value, _EPISODES.value)))]
  actor = evaluation.AgentActor(config, int(envs[0].action_space.shape[0]))   # one compile for every checkpoint
  try:
    for step in steps:
      evaluate_checkpoint(actor, envs, step)
  finally:
    for env in envs:
      env.close()


def evaluate_checkpoint(actor: evaluation.AgentActor, envs: list, step: int | None):
  action_dim = int(envs[0].action_space.shape[0])
  config, state, counters, step, _ = restore.load_run(_WORKDIR.value, step, action_dim)
  print(f'Restored checkpoint {step} of {_WORKDIR.value}: {counters.to_json()}', flush=True)
  seeds = [episode_seed(config.seed, _SEED.value + k) for k in range(_EPISODES.value)]
  start = time.perf_counter()
  summary, episodes = evaluation.evaluate(actor, envs, agent.acting_params(state), seeds, jax.random.PRNGKey(_SEED.value))
  rate = summary['eval/success_rate']
  print(f'Checkpoint {step} ({counters.grad_steps} gradient steps, {counters.env_steps} env steps): '
        f'success rate {rate:.2f} ({int(round(rate * len(episodes)))}/{len(episodes)} episodes), '
        f'mean return {summary["eval/return"]:.1f}; {time.perf_counter() - start:.0f} s with '
        f'{len(envs)} environment(s) in lock step', flush=True)
  if _VIDEO.value:
    path = evaluation.write_video(np.concatenate([e['image'] for e in episodes]),
                                  os.path.join(_WORKDIR.value, 'videos', f'evaluate_{step}.gif'))
    print(f'Video: {path}')
  out = os.path.join(_WORKDIR.value, f'evaluate_{step}.json')
  with open(out, 'w') as f:
    json.dump(dict(step=step, counters=counters.to_json(), episodes=len(episodes), **summary,
                   successes=[bool(e['success']) for e in episodes]), f, indent=2)


if __name__ == '__main__':
  app.run(main)
