r"""Compositional generalisation of the world model (App. A.1) on a Kitchen 'partial' run.

  python -m launch.composition --workdir=runs/partial [--episodes=4] [--step=N]

Conditions the model on the frames up to the third target of scripted episodes that complete all
four, rolls the recorded actions open-loop and the run's policy inside the model, and writes
`<workdir>/composition/composition_<step>.{gif,png,json}` (moto_jax/analysis/composition.py).
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a Kitchen run (trained on partial).', required=True)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_EPISODES = flags.DEFINE_integer('episodes', 4, 'Scripted expert episodes to try.')
_MAX_LENGTH = flags.DEFINE_integer('max_length', 400, 'Time limit of the expert episodes (steps).')


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  from moto_jax.analysis.composition import composition_report

  r = composition_report(_WORKDIR.value, _STEP.value, episodes=_EPISODES.value, max_length=_MAX_LENGTH.value)
  print(
    f'Checkpoint {r["step"]}: {r["episodes"]} of {r["episodes_tried"]} expert episodes completed all four '
    f'targets; context {r["context"]} frames.\n'
    f'Predicted reward along the recorded actions: max {r["pred_reward_max"]:.2f}, mean while all four are '
    f'done {r["pred_reward_mean_when_four_done"]}, final {r["pred_reward_final"]:.2f} (true final count '
    f'{r["true_count_final"]:.1f}; the largest reward in the training data: {r["max_training_reward"]}).\n'
    f'The policy inside the model: final predicted reward {r["policy_reward_final"]:.2f}, max '
    f'{r["policy_reward_max"]:.2f}.\nGIF: {r["gif"]}\nPlot: {r["png"]}'
  )


if __name__ == '__main__':
  app.run(main)
