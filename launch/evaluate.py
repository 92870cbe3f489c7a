r"""Evaluates a run's checkpoint with the deterministic policy.

  python -m launch.evaluate --workdir=runs/drawer-open [--episodes 20] [--video] [--step N]

Works on any machine (CPU included). Episodes start from seeds never used in training.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a run.', required=True)
_EPISODES = flags.DEFINE_integer('episodes', 10, 'Evaluation episodes.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_VIDEO = flags.DEFINE_bool('video', False, 'Write a GIF of the episodes to <workdir>/videos/.')
_SEED = flags.DEFINE_integer('seed', 5_000_000, 'Start-seed offset of the evaluation episodes.')


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  import jax
  import numpy as np
  from moto_jax.data import collect
  from moto_jax.envs import make_env
  from moto_jax.training import evaluation, restore
  env = make_env(restore.load_config(_WORKDIR.value))
  try:
    action_dim = int(env.action_space.shape[0])
    config, state, counters, step, _ = restore.load_run(_WORKDIR.value, _STEP.value, action_dim)
    print(f'Restored checkpoint {step} of {_WORKDIR.value}: {counters.to_json()}')
    actor = evaluation.AgentActor(config, action_dim)
    seeds = [collect.episode_seed(config.seed, _SEED.value + k) for k in range(_EPISODES.value)]
    summary, episodes = evaluation.evaluate(actor, env, state.params, seeds, jax.random.PRNGKey(_SEED.value))
  finally:
    env.close()
  rate = summary['eval/success_rate']
  print(f'Success rate {rate:.2f} ({int(round(rate * len(episodes)))}/{len(episodes)} episodes), '
        f'mean return {summary["eval/return"]:.1f}')
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
