"""Franka Kitchen from pixels. Usage: `--config=configs/kitchen.py:<task>[,<preset>]`.

`<task>` is the paper's task name: `mixed` (microwave, kettle, light switch, slide
cabinet; D4RL's complete/partial goal set) or `partial` (microwave, kettle, bottom
burner, light switch; D4RL's mixed goal set). `<preset>` is one of `paper`, `small`
(default, fits a CPU), `long` (`small` with 10x the online steps) and `debug` (tests).
"""

import ml_collections

from configs import common
from moto_jax.suites.kitchen import TARGET_TASKS

TASKS = tuple(TARGET_TASKS)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task, preset = common.parse_arg(arg, 'mixed', 'configs/kitchen.py', tasks=TASKS)
  env = dict(
    camera='authors',  # the paper's steep top-down view; 'rpl' (the env's default) or 'd5rl'
    action_repeat=1,
    episode_length=280,  # agent steps
    # The arm's meshes (134k faces) drawn decimated to at most this many faces each: at 64x64 the
    # picture barely changes and a frame costs about half (suites/rendering.py); 0 = as shipped.
    mesh_faces=1000,
  )
  data = dict(
    num_episodes=300,
    action_noise=0.1,  # std of Gaussian noise added to the scripted actions
    waypoint_noise=0.01,  # std (m) of the noise on every scripted waypoint
    fail_prob=0.1,  # probability that a scripted sub-task attempt is abandoned half-way
    full_share=0.15,  # share of episodes that attempt all target tasks ('partial': the bc_tasks)
    # Episodes get bc_weight 1 when these target tasks are all in goal state at some step;
    # empty = all four. 'partial' has no full solutions, so it uses the first three (paper).
    bc_tasks=('microwave', 'kettle', 'bottom burner') if task == 'partial' else (),
    # Segment cloning (beyond the paper): each step that leads to the completion of one of those
    # target tasks carries the prior, in every episode, instead of whole episodes that complete them
    # all (suites/kitchen/collect.segment_weights). mixed, small, seed 0: 0.95 -> 1.25 target tasks
    # per episode, against 0.00 -> 0.00 with whole episodes (False, the paper's rule; BUILD_NOTES).
    bc_segments=True,
    # 'random': each episode's sub-tasks in a random order (play data, D4RL's kind); 'fixed': the
    # same sub-tasks in one order (collect.fixed_rank), a diagnostic for how much the order's
    # variety costs a unimodal actor (mixed, small, seed 0: 0.75 -> 0.50 target tasks per episode
    # against 0.95 -> 1.25; BUILD_NOTES). A data change: the dataset is generated anew.
    task_order='random',
    workers=2,  # generator processes
  )
  return common.assemble('kitchen', task, preset, env, data, PRESET_OVERRIDES[preset])


# The paper preset keeps the paper's whole-episode behaviour prior.
PRESET_OVERRIDES = {
  'paper': {'data.bc_segments': False},
  'small': {},
  'long': {},
  'debug': {'env.episode_length': 20, 'data.num_episodes': 2},
}
