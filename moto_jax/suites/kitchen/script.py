"""A scripted Franka Kitchen controller: Cartesian waypoints through a Jacobian controller.

`ArmController` turns an end-effector target (position of the site `end_effector`, a
turn of the hand, gripper open/closed) into one normalised joint-velocity action with
damped least squares, joint-limit handling, gravity feed-forward and a posture term in
the null space. `SubtaskScript` drives one sub-task through a list of `Phase`s whose
waypoints are read from the model's sites when the sub-task starts (plus optional noise).
`PlayScript` chains sub-tasks, the way the RPL play data does, returning the arm to its
home posture between them.

From the reset pose, without noise, every script reaches its goal in 50-75 steps.

Supported sub-tasks: microwave, kettle, light switch, slide cabinet, bottom burner.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import mujoco
import numpy as np

SCRIPTED_SUBTASKS = ('microwave', 'kettle', 'light switch', 'slide cabinet', 'bottom burner')

ARM_DOFS = 7
ACTUATOR_KP = np.array([870.0] * 4 + [120.0] * 3)  # position gains of the arm's actuators
LIMIT_MARGIN = 0.03  # rad
STALL_SPEED = 0.002  # m per step
POSTURE_TOL = 0.3  # rad (largest joint error)
ROT_TOL = 0.2  # rad
# The joints reach about half the commanded velocity within one 0.08 s step (joint damping).
TRACKING = 0.5
ACTION_SCALE = 2.0  # action 1.0 = 2 rad/s joint velocity


def rot_y(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_z(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# The hand points +y (into the kitchen) with the fingers spread along x at reset. TOP_DOWN
# points it down (-z) with the fingers spread along y.
TOP_DOWN = rot_z(-np.pi / 2) @ rot_x(-np.pi / 2)
# Kettle grip: pointing down and tilted 0.5 rad toward +y, so the wrist stays clear of the knobs.
KETTLE_GRIP = rot_x(0.5) @ TOP_DOWN


def _clip_norm(x: np.ndarray, limit: float) -> np.ndarray:
  n = np.linalg.norm(x)
  return x if n <= limit else x * (limit / n)


class ArmController:
  """Damped-least-squares Cartesian controller of the site `end_effector`.

  Args:
    model, data: the kitchen simulation (gymnasium-robotics `FrankaKitchen-v1`).
    dt: seconds per environment step.
    kp: Cartesian P gain (1/s); vmax: speed cap (m/s).
    damping: lambda of the damped least squares.
    limits: [7, 2] joint-target bounds the env enforces (`KitchenEnv.arm_limits`).
  """

  def __init__(
    self,
    model,
    data,
    dt: float = 0.08,
    kp: float = 10.0,
    vmax: float = 1.0,
    kr: float = 6.0,
    damping: float = 0.08,
    posture_gain: float = 0.5,
    limits: np.ndarray | None = None,
  ):
    self.model, self.data, self.dt = model, data, dt
    self.kp, self.vmax, self.kr, self.damping, self.posture_gain = kp, vmax, kr, damping, posture_gain
    self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, 'end_effector')
    self._jacp = np.zeros((3, model.nv))
    self._jacr = np.zeros((3, model.nv))
    self.lo, self.hi = model.jnt_range[:ARM_DOFS, 0].copy(), model.jnt_range[:ARM_DOFS, 1].copy()
    if limits is not None:  # the env's own position bounds on its joint targets
      self.lo, self.hi = np.maximum(self.lo, limits[:, 0]), np.minimum(self.hi, limits[:, 1])
    self.reset()

  def reset(self) -> None:
    """Takes the current pose as the home orientation and posture."""
    self.home_rot = self.data.site_xmat[self.site].reshape(3, 3).copy()
    self.home_qpos = self.data.qpos[:ARM_DOFS].copy()

  def _solve(self, jac, twist, q, free):
    jjt = jac @ jac.T + self.damping**2 * np.eye(6)
    dq = jac.T @ np.linalg.solve(jjt, twist)
    null = np.eye(ARM_DOFS) - jac.T @ np.linalg.solve(jjt, jac)
    return dq + null @ (self.posture_gain * (self.home_qpos - q) * free)

  def rot_error(self, rot: np.ndarray | None = None) -> float:
    """Angle (rad) between the hand's orientation and the home orientation turned by `rot`."""
    want = self.home_rot if rot is None else rot @ self.home_rot
    now = self.data.site_xmat[self.site].reshape(3, 3)
    return float(np.arccos(np.clip((np.trace(want.T @ now) - 1.0) / 2.0, -1.0, 1.0)))

  def posture_action(self, grip: bool = False, gain: float = 3.0, limit: float = 2.0) -> np.ndarray:
    """The action [9] that moves the arm's joints toward the home posture."""
    d = self.data
    dq = np.clip(gain * (self.home_qpos - d.qpos[:ARM_DOFS]), -limit, limit) / TRACKING
    dq += d.qfrc_bias[:ARM_DOFS] / ACTUATOR_KP / self.dt
    fingers = np.full(2, -1.0 if grip else 1.0)
    return np.clip(np.concatenate([dq / ACTION_SCALE, fingers]), -1.0, 1.0)

  def posture_error(self) -> float:
    return float(np.abs(self.home_qpos - self.data.qpos[:ARM_DOFS]).max())

  @property
  def position(self) -> np.ndarray:
    return self.data.site_xpos[self.site].copy()

  def action(
    self, target: np.ndarray, rot: np.ndarray | None = None, grip: bool = False, vmax: float | None = None
  ) -> np.ndarray:
    """The action [9] that moves the end effector toward `target`, with the hand turned by
    `rot` (a world-frame rotation of the home orientation; None = home orientation)."""
    d = self.data
    v = _clip_norm(self.kp * (target - d.site_xpos[self.site]), self.vmax if vmax is None else vmax)
    now = d.site_xmat[self.site].reshape(3, 3)
    want = self.home_rot if rot is None else rot @ self.home_rot
    w = _clip_norm(self.kr * 0.5 * np.cross(now, want, axisa=0, axisb=0).sum(0), 2.0)
    mujoco.mj_jacSite(self.model, d, self._jacp, self._jacr, self.site)
    jac = np.concatenate([self._jacp[:, :ARM_DOFS], self._jacr[:, :ARM_DOFS]])
    twist = np.concatenate([v, w])
    q = d.qpos[:ARM_DOFS]
    free = np.ones(ARM_DOFS, bool)
    for _ in range(3):  # joints at a limit and pushed into it are taken out and the rest re-solved
      dq = self._solve(jac * free, twist, q, free)
      blocked = free & (((q < self.lo + LIMIT_MARGIN) & (dq < 0)) | ((q > self.hi - LIMIT_MARGIN) & (dq > 0)))
      if not blocked.any():
        break
      free &= ~blocked
    dq = dq * free / TRACKING
    dq += d.qfrc_bias[:ARM_DOFS] / ACTUATOR_KP / self.dt  # gravity feed-forward
    fingers = np.full(2, -1.0 if grip else 1.0)
    return np.clip(np.concatenate([dq / ACTION_SCALE, fingers]), -1.0, 1.0)


@dataclasses.dataclass
class Phase:
  """One segment of a sub-task: move toward `target()` until within `tol` or `max_steps` pass."""

  target: Callable[[], np.ndarray]
  grip: bool = False
  rot: np.ndarray | Callable[[], np.ndarray] | None = None  # hand turn (see ArmController)
  tol: float = 0.02
  max_steps: int = 40
  vmax: float | None = None
  min_steps: int = 0
  posture: bool = False  # move in joint space back to the home posture instead (ends within `tol` rad)


class SubtaskScript:
  """Drives one sub-task. `done` once its last phase ends; `abort_at` cuts it short (a failed attempt)."""

  def __init__(
    self,
    name: str,
    ctrl: ArmController,
    rng: np.random.Generator | None = None,
    waypoint_noise: float = 0.0,
    abort_at: int | None = None,
    home_first: bool = False,
  ):
    if name not in SCRIPTED_SUBTASKS:
      raise ValueError(f'No script for sub-task {name!r}; scripted sub-tasks: {SCRIPTED_SUBTASKS}')
    self.name, self.ctrl = name, ctrl
    rng = rng or np.random.default_rng(0)
    self._noise = lambda: waypoint_noise * rng.standard_normal(3)
    self.phases = _PROGRAMS[name](ctrl, self._noise)
    if abort_at is not None:
      self.phases = self.phases[: max(1, min(abort_at, len(self.phases) - 1))] + [_release(ctrl, self._noise)]
    if home_first:  # the previous sub-task may have left the arm in an awkward posture
      self.phases.insert(0, Phase(lambda: ctrl.position, posture=True, tol=POSTURE_TOL, max_steps=15))
    self._index, self._steps, self._last = 0, 0, None
    self.history = []  # (phase index, steps, 'reached' | 'stalled' | 'timeout') per finished phase

  @property
  def done(self) -> bool:
    return self._index >= len(self.phases)

  def action(self) -> np.ndarray:
    phase = self.phases[self._index]
    if phase.posture:
      act = self.ctrl.posture_action(phase.grip)
      self._steps += 1
      if self.ctrl.posture_error() < phase.tol or self._steps >= phase.max_steps:
        self.history.append((self._index, self._steps, 'reached' if self._steps < phase.max_steps else 'timeout'))
        self._index, self._steps, self._last = self._index + 1, 0, None
      return act
    target = phase.target()
    rot = phase.rot() if callable(phase.rot) else phase.rot
    pos = self.ctrl.position
    act = self.ctrl.action(target, rot, phase.grip, phase.vmax)
    self._steps += 1
    reached = np.linalg.norm(target - pos) < phase.tol and self.ctrl.rot_error(rot) < ROT_TOL
    # Blocked by contact: the hand stopped moving short of the waypoint.
    stalled = (
      phase.tol > 0
      and self._last is not None
      and self._steps > 4
      and np.linalg.norm(pos - self._last) < STALL_SPEED
      and self.ctrl.rot_error(rot) < ROT_TOL
    )
    self._last = pos
    if (reached or stalled) and self._steps >= phase.min_steps or self._steps >= phase.max_steps:
      how = 'reached' if reached else 'stalled' if stalled else 'timeout'
      self.history.append((self._index, self._steps, how))
      self._index, self._steps, self._last = self._index + 1, 0, None
    return act


def _site(ctrl, name):
  return ctrl.data.site_xpos[mujoco.mj_name2id(ctrl.model, mujoco.mjtObj.mjOBJ_SITE, name)].copy()


def _fixed(point):
  point = np.asarray(point, float).copy()
  return lambda: point


def _release(ctrl, noise):
  """Open the gripper and back off toward the robot."""
  start = ctrl.position + np.array([0.0, -0.12, 0.03]) + noise()
  return Phase(lambda: start, grip=False, tol=0.04, max_steps=12)


def _retreat(ctrl, offset=(0.0, -0.12, 0.0), grip=False, rot=None):
  """Back off from wherever the previous phase ended (read when this phase starts)."""
  state = {}

  def target():
    if 'p' not in state:
      state['p'] = ctrl.position + np.asarray(offset)
    return state['p']

  return Phase(target, grip=grip, rot=rot, tol=0.04, max_steps=12)


def _slide_cabinet(ctrl, noise):
  h = _site(ctrl, 'slide_site') + noise()
  return [
    Phase(_fixed(h + [-0.10, -0.14, -0.02]), tol=0.05, max_steps=40),
    Phase(_fixed(h + [-0.07, 0.0, -0.02]), tol=0.02, max_steps=25),
    Phase(_fixed(h + [0.30, 0.0, -0.02]), tol=0.05, max_steps=25, vmax=0.6),
    _retreat(ctrl),
  ]


def _light_switch(ctrl, noise):
  h = _site(ctrl, 'light_site') + noise()
  return [
    Phase(_fixed(h + [0.05, -0.12, 0.0]), tol=0.05, max_steps=40),
    Phase(_fixed(h + [0.05, 0.01, 0.0]), tol=0.02, max_steps=25),
    Phase(_fixed(h + [-0.15, 0.01, 0.0]), tol=0.03, max_steps=15, vmax=0.5),
    _retreat(ctrl),
  ]


TURN = rot_y(0.75)  # turning the bottom-burner knob about world +y


def _bottom_burner(ctrl, noise):
  k = _site(ctrl, 'knob2_site') + noise()
  return [
    Phase(_fixed(k + [0.0, -0.12, 0.0]), tol=0.04, max_steps=40),
    Phase(_fixed(k + [0.0, 0.01, 0.0]), tol=0.015, max_steps=25),
    Phase(_fixed(k + [0.0, 0.01, 0.0]), grip=True, tol=0.0, max_steps=6),
    Phase(_fixed(k + [0.0, 0.01, 0.0]), grip=True, rot=TURN, tol=0.0, max_steps=16),
    Phase(_fixed(k + [0.0, 0.01, 0.0]), grip=False, rot=TURN, tol=0.0, max_steps=4),
    _retreat(ctrl, rot=TURN),
  ]


def _microwave(ctrl, noise):
  h = _site(ctrl, 'microhandle_site') + noise()
  jid = mujoco.mj_name2id(ctrl.model, mujoco.mjtObj.mjOBJ_JOINT, 'microwave')
  hinge = ctrl.data.xanchor[jid].copy()
  qadr = ctrl.model.jnt_qposadr[jid]
  lead = 0.3  # rad ahead of the door's current angle

  def along_arc():
    # The grasp point carried further along the door's arc (rotation about +z; opening < 0).
    angle = ctrl.data.qpos[qadr] - lead
    return hinge + rot_z(angle) @ (h - hinge)

  def hand_turn():
    # Turning the hand against the door keeps the wrist within reach as the handle swings out.
    return rot_z(0.5 * lead - ctrl.data.qpos[qadr])

  return [
    Phase(_fixed(h + [0.0, -0.12, 0.0]), tol=0.04, max_steps=40),
    Phase(_fixed(h + [0.0, 0.0, 0.0]), tol=0.015, max_steps=15),
    Phase(_fixed(h), grip=True, tol=0.0, max_steps=4),
    Phase(along_arc, rot=hand_turn, grip=True, tol=0.0, max_steps=20, vmax=0.6),
    _retreat(ctrl, offset=(0.05, -0.05, 0.0)),
  ]


def _kettle(ctrl, noise):
  # Grip the top bar of the handle from above, lift, carry +y onto the back burner, put down.
  k = _site(ctrl, 'kettle_site') + [0.0, -0.015, 0.0] + noise()  # pads centred on the bar
  return [
    Phase(_fixed(k + [0.0, 0.0, 0.14]), rot=KETTLE_GRIP, tol=0.04, max_steps=40, min_steps=8),
    Phase(_fixed(k + [0.0, 0.0, 0.005]), rot=KETTLE_GRIP, tol=0.015, max_steps=20),
    Phase(_fixed(k + [0.0, 0.0, 0.005]), rot=KETTLE_GRIP, grip=True, tol=0.0, max_steps=5),
    Phase(_fixed(k + [0.0, 0.0, 0.08]), rot=KETTLE_GRIP, grip=True, tol=0.03, max_steps=15),
    Phase(_fixed(k + [0.04, 0.34, 0.08]), rot=KETTLE_GRIP, grip=True, tol=0.05, max_steps=25, vmax=0.5),
    Phase(_fixed(k + [0.04, 0.34, 0.03]), rot=KETTLE_GRIP, grip=True, tol=0.02, max_steps=6),
    Phase(_fixed(k + [0.04, 0.34, 0.03]), rot=KETTLE_GRIP, grip=False, tol=0.0, max_steps=3),
    _retreat(ctrl, offset=(0.0, -0.15, 0.06), rot=KETTLE_GRIP),
    Phase(_fixed(k + [0.0, -0.10, 0.25]), tol=0.06, max_steps=8),
  ]  # hand level again


_PROGRAMS = {
  'microwave': _microwave,
  'kettle': _kettle,
  'light switch': _light_switch,
  'slide cabinet': _slide_cabinet,
  'bottom burner': _bottom_burner,
}


class PlayScript:
  """Runs sub-tasks in order, then holds still. `policy(obs, info) -> action` for `rollout`.

  Args:
    env: a `KitchenEnv` (reads `env.model` / `env.data`).
    sequence: sub-task names, in order.
    rng: noise source.
    action_noise: std of Gaussian noise added to every action.
    waypoint_noise: std (m) of the noise on every waypoint.
    aborts: per sub-task, None or the phase at which the attempt is abandoned.
  """

  def __init__(
    self, env, sequence, rng: np.random.Generator, action_noise: float = 0.0, waypoint_noise: float = 0.0, aborts=None
  ):
    self.env, self.sequence, self.rng = env, list(sequence), rng
    self.action_noise, self.waypoint_noise = action_noise, waypoint_noise
    self.aborts = list(aborts) if aborts is not None else [None] * len(self.sequence)
    self.ctrl = None
    self._current, self._next = None, 0

  @property
  def finished(self) -> bool:
    """All sub-tasks have run; the arm now holds still."""
    return self._next >= len(self.sequence) and (self._current is None or self._current.done)

  def __call__(self, obs, info) -> np.ndarray:
    del obs, info
    if self.ctrl is None:
      self.ctrl = ArmController(self.env.model, self.env.data, dt=0.08, limits=getattr(self.env, 'arm_limits', None))
    while self._current is None or self._current.done:
      if self._next >= len(self.sequence):
        return self.ctrl.action(self.ctrl.position)
      self._current = SubtaskScript(
        self.sequence[self._next],
        self.ctrl,
        self.rng,
        self.waypoint_noise,
        self.aborts[self._next],
        home_first=self._next > 0,
      )
      self._next += 1
    act = self._current.action()
    if self.action_noise > 0:
      act = act + self.action_noise * self.rng.standard_normal(act.shape)
    return np.clip(act, -1.0, 1.0)
