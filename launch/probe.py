r"""Is it the world model or the actor? Retrain only the actor of a run on its frozen world model.

  python -m launch.probe --workdir=DIR --loss=bc --reinit --lr=1e-3 --steps=1500 [--step=N]
  python -m launch.probe --workdir=DIR --loss=moto --bc_scale=1 --steps=300

If BC alone on frozen features solves the task while the run's own actor does not, the world model's
representation is sufficient and the actor's objective or training is what fails
(moto_jax/analysis/actor_probe.py).
"""

import os

from absl import app, flags

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a run (its latest checkpoint unless --step).')
_LOSS = flags.DEFINE_enum('loss', 'bc', ['bc', 'moto'], 'BC alone (Eq. 10) or the full MOTO actor loss.')
_BC_SCALE = flags.DEFINE_float('bc_scale', None, "Default: the run's agent.bc_scale.")
_STEPS = flags.DEFINE_integer('steps', 300, 'Adam steps of the actor.')
_EPISODES = flags.DEFINE_integer('episodes', 10, 'Evaluation episodes (start seeds never trained on).')
_LR = flags.DEFINE_float('lr', None, "Actor learning rate; default: the run's agent.actor_lr.")
_SET = flags.DEFINE_multi_string('set', [], 'Agent config override for the probe, e.g. --set penalty_scale=10.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_REINIT = flags.DEFINE_bool('reinit', False, "Start from a freshly initialised actor, not the run's.")
_EVAL_OWN = flags.DEFINE_bool('eval_checkpoint_actor', False, "Also evaluate the run's own actor.")
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  from moto_jax.analysis import actor_probe

  actor_probe.run(
    _WORKDIR.value,
    loss=_LOSS.value,
    bc_scale=_BC_SCALE.value,
    steps=_STEPS.value,
    episodes=_EPISODES.value,
    lr=_LR.value,
    overrides=tuple(_SET.value),
    step=_STEP.value,
    reinit=_REINIT.value,
    eval_checkpoint_actor=_EVAL_OWN.value,
  )


if __name__ == '__main__':
  app.run(main)
