"""Franka Kitchen (gymnasium-robotics `FrankaKitchen-v1`) from pixels, as the paper uses it.

64x64 RGB from one fixed camera (the authors' steep top-down view by default), no proprioception,
action repeat 1, 280 steps per episode. The reward is the number of target tasks whose
object is currently in its goal state, paid at every step; completed tasks are not
removed and the episode does not end when all four are done.

The paper's task names differ from D4RL's:

  paper task | target tasks (fixed order)                            | D4RL goal set
  -----------|-------------------------------------------------------|---------------------------
  'mixed'    | microwave, kettle, light switch, slide cabinet        | kitchen-complete / -partial
  'partial'  | microwave, kettle, bottom burner, light switch        | kitchen-mixed

`info['tasks_done']` is a bool vector over the target tasks in that order (object in goal
state at this step), `info['success']` is 1.0 when all four are in goal state at this step.
An episode counts as a success when `success` was 1.0 at any step.

The wrapper owns all seeding: `reset(seed=s)` draws the simulator's observation-noise seed
(the noise feeds the joint-position controller, so it changes the motion) from `s`, so the
same seed and actions give identical images.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

try:  # gymnasium_robotics prints a notice about its Adroit environments' rewards on import, from this
  # table; Kitchen is not concerned, and it would precede every Kitchen job's output and one-line errors.
  from farama_notifications import notifications as _notifications

  _notifications.pop('gymnasium_robotics', None)
except ImportError:
  pass
from gymnasium_robotics.envs.franka_kitchen import kitchen_env as gr_kitchen

from moto_jax.suites.kitchen import TARGET_TASKS, check_task
from moto_jax.suites.rendering import FastRenderer, FreeCamera

TASKS = TARGET_TASKS
D4RL_NAMES = {'mixed': 'kitchen-complete / kitchen-partial', 'partial': 'kitchen-mixed'}

# Every sub-task the simulator knows, with the joint indices and goal it is judged by.
ALL_SUBTASKS = tuple(gr_kitchen.OBS_ELEMENT_GOALS)
GOAL_THRESHOLD = gr_kitchen.BONUS_THRESH  # L2 distance of the object pose to its goal

CAMERAS = {
  # The paper's view: the authors' Kitchen wrapper renders a movable camera at distance 1.86,
  # azimuth 90, elevation -60 looking at (-0.3, 0.5, 2.0), a steep top-down view (the default).
  'authors': FreeCamera(distance=1.86, azimuth=90.0, elevation=-60.0, lookat=(-0.3, 0.5, 2.0)),
  # The env's default free camera: the original RPL view.
  'rpl': FreeCamera(distance=2.2, azimuth=70.0, elevation=-35.0, lookat=(-0.2, 0.5, 2.0)),
  # The D5RL benchmark's view.
  'd5rl': FreeCamera(distance=2.1, azimuth=70.0, elevation=-37.5, lookat=(-0.4, 0.5, 2.0)),
}


def goal_distances(qpos: np.ndarray, subtasks) -> np.ndarray:
  """L2 distance of each named sub-task's object pose to its goal."""
  return np.array(
    [np.linalg.norm(qpos[gr_kitchen.OBS_ELEMENT_INDICES[t]] - gr_kitchen.OBS_ELEMENT_GOALS[t]) for t in subtasks],
    np.float64,
  )


def progress(distances: np.ndarray, start: np.ndarray) -> np.ndarray:
  """How far each object has come from its pose at the reset toward its goal region, as a fraction:
  0 where it is no closer than at the reset, 1 once it is within `GOAL_THRESHOLD` (the task is done)."""
  start, distances = np.asarray(start), np.asarray(distances)
  span = np.maximum(start - GOAL_THRESHOLD, 1e-6)
  moved = np.clip((start - distances) / span, 0.0, 1.0)
  return np.where(distances < GOAL_THRESHOLD, 1.0, moved).astype(np.float32)  # done as `subtasks_done` says


def subtasks_done(qpos: np.ndarray, subtasks) -> np.ndarray:
  """Bool vector: is each named sub-task's object within `GOAL_THRESHOLD` of its goal?"""
  return np.array(
    [
      np.linalg.norm(qpos[gr_kitchen.OBS_ELEMENT_INDICES[t]] - gr_kitchen.OBS_ELEMENT_GOALS[t]) < GOAL_THRESHOLD
      for t in subtasks
    ],
    bool,
  )


class KitchenEnv(gym.Env):
  """A Franka Kitchen task with image observations `{'image': uint8 [S, S, 3]}`.

  `info` carries `tasks_done` (bool [4], target-task order of `TASKS[task]`), `tasks_progress`
  (float [4], the same order: how far each object has come toward its goal since the reset, 1 = done;
  `progress`), `success` (0/1 at this step) and `all_done` (bool over `ALL_SUBTASKS`). Scripted controllers may
  read the simulation through `model` and `data`; agents never see them.
  """

  metadata = {'render_modes': ['rgb_array']}
  # Per-step info recorded in every episode (episode key -> info key), as the offline data has them.
  STEP_INFO = {'tasks_done': 'tasks_done', 'subtasks_done': 'all_done', 'tasks_progress': 'tasks_progress'}

  def __init__(
    self,
    task: str,
    seed: int = 0,
    image_size: int = 64,
    camera: str = 'authors',
    action_repeat: int = 1,
    episode_length: int = 280,
    render_quality: str = 'fast',
    mesh_faces: int = 0,
  ):
    self.task = check_task(task)
    self.target_tasks = TASKS[self.task]
    if camera not in CAMERAS:
      raise ValueError(f'camera={camera!r}; expected one of {sorted(CAMERAS)}')
    if int(action_repeat) < 1 or int(episode_length) < 1:
      raise ValueError(f'action_repeat={action_repeat} and episode_length={episode_length} must be >= 1')
    self.camera = camera
    self.action_repeat = int(action_repeat)
    self.episode_length = int(episode_length)
    self._env = gr_kitchen.KitchenEnv(
      tasks_to_complete=list(self.target_tasks), terminate_on_tasks_completed=False, remove_task_when_completed=False
    )
    self.model, self.data = self._env.model, self._env.data
    # Bounds the simulator puts on the arm's joint-position targets ([7, 2]).
    self.arm_limits = self._env.robot_env.robot_pos_bound[:7].copy()
    self.renderer = FastRenderer(
      self.model, self.data, image_size, CAMERAS[camera], quality=render_quality, mesh_faces=mesh_faces
    )
    self._rng = np.random.default_rng(seed)
    self._steps = None
    self._start_distances = np.zeros(len(self.target_tasks))
    self.action_space = gym.spaces.Box(-1.0, 1.0, (9,), np.float32)
    self.observation_space = gym.spaces.Dict({'image': gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)})

  def settings(self) -> dict:
    """Everything that determines what the agent sees; recorded in every dataset."""
    return dict(
      domain='kitchen',
      task=self.task,
      target_tasks=list(self.target_tasks),
      action_repeat=self.action_repeat,
      episode_length=self.episode_length,
      camera=self.camera,
      render=self.renderer.settings(),
    )

  def _obs(self):
    return {'image': self.renderer.render()}

  def _info(self):
    done = subtasks_done(self.data.qpos, self.target_tasks)
    moved = progress(goal_distances(self.data.qpos, self.target_tasks), self._start_distances)
    return {
      'tasks_done': done,
      'tasks_progress': moved,
      'success': float(done.all()),
      'all_done': subtasks_done(self.data.qpos, ALL_SUBTASKS),
    }

  def reset(self, *, seed: int | None = None, options=None):
    if seed is not None:
      self._rng = np.random.default_rng(seed)
    self._env.reset(seed=int(self._rng.integers(2**31 - 1)))
    self._start_distances = goal_distances(self.data.qpos, self.target_tasks)
    self._steps = 0
    return self._obs(), self._info()

  def step(self, action):
    if self._steps is None:
      raise RuntimeError('step() called before reset()')
    action = np.asarray(action, np.float64)
    if action.shape != (9,):
      raise ValueError(f'action has shape {action.shape}; expected (9,)')
    action = np.clip(action, -1.0, 1.0)
    for _ in range(self.action_repeat):
      self._env.step(action)
    self._steps += 1
    info = self._info()
    reward = float(info['tasks_done'].sum())
    truncated = self._steps >= self.episode_length
    return self._obs(), reward, False, truncated, info

  def render(self):
    return self.renderer.render()

  def close(self):
    self.renderer.close()
    self._env.close()
