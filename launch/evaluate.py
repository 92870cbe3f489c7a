r"""Evaluates a run's checkpoint with the deterministic policy (or, with --explore, the exploring one).

  python -m launch.evaluate --workdir=runs/drawer-open [--episodes 20] [--video] [--step N | --all_checkpoints] [--explore]
  python -m launch.evaluate --workdir=runs/drawer-open --episodes=0 --demo_diagnostics
  python -m launch.evaluate --workdir=runs/drawer-open --episodes=0 --action_values --envs=16

Works on any machine (CPU included). Episodes start from seeds never used in training and run
`--envs` at a time in lock step. `--all_checkpoints` evaluates every checkpoint kept in the workdir
(a learning curve over gradient steps) and prints one line per checkpoint. `--demo_diagnostics`
prints the actor's and the critic's statistics on the run's demonstrations at each checkpoint
(docs/USAGE.md, "What a run writes"); `--action_values` replays the demos and asks the environment
what one changed action is worth, against the critic (moto_jax/analysis/action_values.py);
`--episodes=0` skips the episodes.
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a run.', required=True)
_EPISODES = flags.DEFINE_integer('episodes', 10, 'Evaluation episodes.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_ALL = flags.DEFINE_bool('all_checkpoints', False, 'Evaluate every checkpoint in the workdir, oldest first.')
_ENVS = flags.DEFINE_integer('envs', 10, 'Environments run in lock step (one batched policy call per step).')
_VIDEO = flags.DEFINE_bool('video', False, 'Write a GIF of the episodes to <workdir>/videos/.')
_SEED = flags.DEFINE_integer('seed', 5_000_000, 'Start-seed offset of the evaluation episodes.')
_DEMO_DIAG = flags.DEFINE_bool(
  'demo_diagnostics', False, "Also print the actor's and the critic's statistics on the run's demonstrations."
)
_ACTION_VALUES = flags.DEFINE_bool(
  'action_values',
  False,
  'Also replay the demos and ask the environment what one changed action is worth, against the critic '
  '(moto_jax/analysis/action_values.py).',
)
_ACTION_HOLD = flags.DEFINE_integer(
  'action_hold', 1, 'With --action_values: the branch lasts this many steps (one noise vector held over them).'
)
_EXPLORE = flags.DEFINE_bool(
  'explore', False, 'Act as the exploring episodes do (config.agent.explore_from, explore_noise), not tanh(mean).'
)


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  from moto_jax.analysis import checkpoints

  try:
    steps = checkpoints.checkpoint_steps(_WORKDIR.value, _ALL.value, _STEP.value)
  except FileNotFoundError as e:
    raise app.UsageError(str(e)) from None
  if _ACTION_HOLD.value < 1:
    raise app.UsageError(f'--action_hold={_ACTION_HOLD.value}: a branch lasts at least one step')
  if _EPISODES.value <= 0 and not (_DEMO_DIAG.value or _ACTION_VALUES.value):
    raise app.UsageError('--episodes=0 evaluates nothing; add --demo_diagnostics, --action_values or give episodes')
  log = lambda s: print(s, flush=True)
  if _EPISODES.value > 0:
    checkpoints.evaluate_checkpoints(
      _WORKDIR.value,
      steps,
      episodes=_EPISODES.value,
      envs=_ENVS.value,
      seed_offset=_SEED.value,
      video=_VIDEO.value,
      log=log,
      explore=_EXPLORE.value,
    )
  if _DEMO_DIAG.value:
    checkpoints.demo_diagnostics(_WORKDIR.value, steps, log=log)
  if _ACTION_VALUES.value:
    from moto_jax.analysis import action_values

    action_values.action_values(_WORKDIR.value, steps, envs=_ENVS.value, hold=_ACTION_HOLD.value, log=log)


if __name__ == '__main__':
  app.run(main)
