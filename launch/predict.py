r"""Open-loop video prediction: how well does the world model imagine the future?

  python -m launch.predict --workdir=runs/drawer-open [--context 5] [--horizon 45] [--episodes 4]

Conditions on the first `context` frames of held-out episodes, rolls the prior forward
on the recorded actions, and writes `<workdir>/openloop/openloop_<step>.gif` (rows:
episodes; columns: truth | prediction | error) and `rewards_<step>.png` (predicted vs
true rewards). Held-out episodes are fresh noise-free scripted episodes from seeds the dataset
never used (Kitchen: the scripted controller running the four target tasks in order), or the
episodes of `--episodes_dir`.
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a run.', required=True)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_CONTEXT = flags.DEFINE_integer('context', 5, 'Observed frames before the open-loop rollout.')
_HORIZON = flags.DEFINE_integer('horizon', 45, 'Predicted frames.')
_EPISODES = flags.DEFINE_integer('episodes', 4, 'Held-out episodes to predict.')
_START = flags.DEFINE_integer('start', 0, 'First step of the window within each episode.')
_EPISODES_DIR = flags.DEFINE_string('episodes_dir', None, 'Take episodes from this directory instead.')


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  from moto_jax.analysis.openloop import openloop_report

  r = openloop_report(
    _WORKDIR.value,
    _STEP.value,
    context=_CONTEXT.value,
    horizon=_HORIZON.value,
    episodes=_EPISODES.value,
    start=_START.value,
    episodes_dir=_EPISODES_DIR.value,
  )
  print(
    f'Checkpoint {r["step"]}: {r["episodes"]} episodes, context {r["context"]}, {r["predicted_steps"]} '
    f'predicted steps: image MSE {r["image_mse"]:.4f} (pixels in [0, 1]), reward MAE {r["reward_mae"]:.3f}'
  )
  print(f'GIF: {r["gif"]}\nRewards: {r["png"]}')


if __name__ == '__main__':
  app.run(main)
