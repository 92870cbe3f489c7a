"""Scripted Franka Kitchen play data, in the spirit of the RPL demonstrations behind D4RL.

Every episode runs a sequence of 2-4 scripted sub-tasks (out of microwave, kettle, light
switch, slide cabinet, bottom burner) in a random order, with noise on the waypoints and
actions, and some attempts abandoned half-way. The episode ends when its script is done
(plus a few still steps) or after `env.episode_length` steps.

  'mixed':   a share `data.full_share` of the episodes attempts all four target tasks (so a
             small share solves the task); the other plans never hold all four.
  'partial': no plan holds all four target tasks; a share `data.full_share` attempts the
             three `bc_tasks` (the paper's first three) plus possibly the slide cabinet. An
             episode in which all four target tasks are in goal state at once is cut just
             before that step, so the dataset never contains a full solution.

Episode `i` is `episode_{i:06d}.npz` with the usual keys plus `tasks_done` (bool
[T+1, 4], the target tasks in `TASKS[task]` order) and `subtasks_done` (bool [T+1, 7],
`ALL_SUBTASKS` order). `success`: all four target tasks in goal state at some step.
`bc_weight`: the `bc_tasks` (all four when empty) in goal state together at some step.
Episode `i` uses seed `episode_seed(seed, i)`, so generation is reproducible and resumes by
skipping episodes already on disk.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import tqdm

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.data import rollout as rollout_lib
from moto_jax.data.rollout import episode_seed
from moto_jax.suites.kitchen import TASK_ORDERS
from moto_jax.suites.kitchen import script as kitchen_script

MIN_SUBTASKS, MAX_SUBTASKS = 2, 4
HOLD_STEPS = 5  # still steps after a script ends
SUMMARY_KEYS = ('reward', 'tasks_done', 'subtasks_done', 'success', 'bc_weight')
EPISODE_KEYS = (
  'image',
  'action',
  'reward',
  'discount',
  'is_first',
  'is_terminal',
  'tasks_done',
  'subtasks_done',
  'success',
  'bc_weight',
)


def fixed_rank(task: str) -> dict:
  """The one order of `data.task_order='fixed'`: the sub-tasks that are not targets first (the bottom
  burner fails after the light switch), then the targets in the expert's `EXPERT_ORDER`."""
  from moto_jax.suites.kitchen import EXPERT_ORDER

  others = [t for t in kitchen_script.SCRIPTED_SUBTASKS if t not in EXPERT_ORDER[task]]
  return {t: i for i, t in enumerate(others + list(EXPERT_ORDER[task]))}


def plan_episode(
  target_tasks,
  bc_tasks,
  task: str,
  rng: np.random.Generator,
  full_share: float,
  fail_prob: float,
  order: str = 'random',
) -> tuple[list[str], list]:
  """Returns (sub-task sequence, per-sub-task abort phase or None). `order`: 'random' (play data:
  the sub-tasks in any order) or 'fixed' (the same draws, sorted by `fixed_rank`)."""
  candidates = list(kitchen_script.SCRIPTED_SUBTASKS)
  if rng.random() < full_share:
    core = list(target_tasks) if task == 'mixed' else list(bc_tasks)
    extra = [t for t in candidates if t not in target_tasks]
    if len(core) < MAX_SUBTASKS and extra and rng.random() < 0.5:
      core.append(extra[rng.integers(len(extra))])
    sequence = [core[i] for i in rng.permutation(len(core))]
  else:
    while True:
      k = int(rng.integers(MIN_SUBTASKS, MAX_SUBTASKS + 1))
      sequence = [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]
      if not set(target_tasks) <= set(sequence):
        break
  if order == 'fixed':
    rank = fixed_rank(task)
    sequence = sorted(sequence, key=rank.__getitem__)
  elif order not in TASK_ORDERS:
    raise ValueError(f'config.data.task_order={order!r}: expected one of {", ".join(map(repr, TASK_ORDERS))}')
  aborts = [int(rng.integers(1, 4)) if rng.random() < fail_prob else None for _ in sequence]
  return sequence, aborts


def segment_weights(tasks_done: np.ndarray, target_tasks, bc_tasks=()) -> np.ndarray:
  """Segment cloning: the behaviour-prior weight of each step [T+1] from the per-step target flags
  `tasks_done` [T+1, K]. Each of the `bc_tasks` (all targets when empty) that first enters its goal
  at step c > 0 marks the steps from the previous such completion (or the reset) up to c - 1, the
  states whose actions led to it; steps after the last completion, and every step of an episode
  that completes none, weigh 0."""
  names = list(bc_tasks) or list(target_tasks)
  cols = [list(target_tasks).index(n) for n in names]
  done = np.asarray(tasks_done, bool)[:, cols]
  firsts = sorted(int(np.argmax(done[:, k])) for k in range(done.shape[1]) if done[:, k].any() and not done[0, k])
  weights = np.zeros(len(done), np.float32)
  previous = 0
  for c in firsts:
    weights[previous:c] = 1.0
    previous = c
  return weights


def bc_predicate(tasks_done: np.ndarray, target_tasks, bc_tasks) -> bool:
  """True when the `bc_tasks` (all targets when empty) are in goal state together at some step."""
  names = list(bc_tasks) or list(target_tasks)
  unknown = [n for n in names if n not in target_tasks]
  if unknown:
    raise ValueError(f'data.bc_tasks has {unknown}, which are not target tasks {list(target_tasks)}')
  cols = [list(target_tasks).index(n) for n in names]
  return bool(tasks_done[:, cols].all(axis=1).any())


def rollout(env, policy, seed: int, bc_tasks=(), forbid_success: bool = False) -> dict:
  """One episode of `policy(obs, info) -> action` in the episode format (plus task flags), through
  the shared `data.rollout.rollout` with Kitchen's rules:

  * stop: the episode ends when `policy.finished` has held for `HOLD_STEPS` steps (or the env
    truncates);
  * cut: with `forbid_success`, it ends before the first step at which all target tasks are done;
  * label: `success` when all target tasks are in goal state at some step, `bc_weight` by
    `bc_predicate` on the `bc_tasks`.
  """
  hold = [0]

  def stop(info):
    del info
    hold[0] = hold[0] + 1 if getattr(policy, 'finished', False) else 0
    return hold[0] >= HOLD_STEPS

  def label(episode, success):
    del success
    tasks = episode['tasks_done']
    return bool(tasks.all(axis=1).any()), float(bc_predicate(tasks, env.target_tasks, bc_tasks))

  cut = (lambda info: bool(info['tasks_done'].all())) if forbid_success else None
  episode = rollout_lib.rollout(env, policy, seed, stop=stop, cut=cut, label=label)
  return {k: episode[k] for k in EPISODE_KEYS}  # the datasets' key order (files as before)


# ---------------------------------------------------------------------------------------------
# Worker processes: each builds one environment and writes the episodes it is given.

_WORKER = {}


def _init_worker(config):
  os.environ.setdefault('MUJOCO_GL', 'egl')
  from moto_jax.suites import make_env

  _WORKER['config'] = config
  _WORKER['env'] = make_env(config, seed=config.seed)
  mp.util.Finalize(None, _close_worker, exitpriority=10)  # close the renderer when the worker exits


def _close_worker():
  env = _WORKER.pop('env', None)
  if env is not None:
    env.close()


def generate_episode(env, config, index: int) -> dict:
  """Generates episode `index` of the dataset described by `config`."""
  data = config.data
  ep_seed = episode_seed(config.seed, index)
  rng = np.random.default_rng(ep_seed)
  sequence, aborts = plan_episode(
    env.target_tasks, data.bc_tasks, env.task, rng, data.full_share, data.fail_prob, data.get('task_order', 'random')
  )
  policy = kitchen_script.PlayScript(
    env, sequence, rng, action_noise=data.action_noise, waypoint_noise=data.waypoint_noise, aborts=aborts
  )
  return rollout(env, policy, ep_seed, data.bc_tasks, forbid_success=env.task == 'partial')


def _summary(episode: dict) -> dict:
  out = {k: np.asarray(episode[k]) for k in SUMMARY_KEYS}
  out['length'] = ep_lib.num_steps(episode)
  return out


def _work(args):
  index, path = args
  episode = generate_episode(_WORKER['env'], _WORKER['config'], index)
  ep_lib.save_episode(path, episode)
  return index, _summary(episode)


def _read_summary(path: str) -> dict | None:
  """The summary keys of an existing episode file; None if the file is unreadable."""
  try:
    with np.load(path, allow_pickle=False) as f:
      out = {k: f[k] for k in SUMMARY_KEYS}
    out['length'] = len(out['reward']) - 1
    return out
  except Exception:  # pylint: disable=broad-except
    return None


# ---------------------------------------------------------------------------------------------


def statistics(summaries: list[dict], target_tasks) -> dict:
  """Dataset figures beyond `manifest.summarize`: per-task completion, tasks per episode."""
  from moto_jax.suites.kitchen.env import ALL_SUBTASKS

  done = np.array([s['tasks_done'].any(axis=0) for s in summaries]) if summaries else np.zeros((0, 4))
  sub = np.array([s['subtasks_done'].any(axis=0) for s in summaries]) if summaries else np.zeros((0, 7))
  counts = done.sum(axis=1)
  mean = lambda x: float(np.mean(x)) if len(x) else 0.0
  return dict(
    average_target_tasks_completed=mean(counts),
    average_subtasks_completed=mean(sub.sum(axis=1)),
    target_task_completion_rate={t: mean(done[:, i]) for i, t in enumerate(target_tasks)},
    subtask_completion_rate={t: mean(sub[:, i]) for i, t in enumerate(ALL_SUBTASKS)},
    episodes_by_target_tasks_completed={int(k): int((counts == k).sum()) for k in range(5)},
    max_return_per_step=float(max((s['reward'].max() for s in summaries), default=0.0)),
    average_length=mean([s['length'] for s in summaries]),
    paper_app_c2=dict(
      trajectories=len(summaries),
      transitions=int(sum(s['length'] for s in summaries)),
      average_return=mean([float(s['reward'].sum()) for s in summaries]),
      average_objects_manipulated=mean(sub.sum(axis=1)),
    ),
  )


def collect_kitchen(
  config, out_dir: str, num_episodes: int | None = None, workers: int | None = None, progress: bool = True
) -> dict:
  """Writes `num_episodes` scripted play episodes of `config.task` to `out_dir`; returns the manifest."""
  from moto_jax.suites.kitchen.env import D4RL_NAMES, TASKS, check_task

  check_task(config.task)
  num_episodes = config.data.num_episodes if num_episodes is None else int(num_episodes)
  workers = config.data.workers if workers is None else int(workers)
  if num_episodes < 1 or workers < 1:
    raise ValueError(f'num_episodes={num_episodes} and workers={workers} must be >= 1')
  os.makedirs(out_dir, exist_ok=True)
  summaries, todo = {}, []
  for i in range(num_episodes):
    path = os.path.join(out_dir, ep_lib.episode_name(i))
    s = _read_summary(path) if os.path.exists(path) else None
    if s is None:
      todo.append((i, path))
    else:
      summaries[i] = s
  ctx = mp.get_context('spawn')  # fresh processes: no GL context is shared across a fork
  start = time.time()
  pool = ctx.Pool(workers, initializer=_init_worker, initargs=(config,))
  try:
    settings = pool.apply(_settings)
    manifest_lib.check_settings(out_dir, settings)
    bar = tqdm.tqdm(
      total=num_episodes, initial=len(summaries), desc=f'kitchen {config.task}', unit='ep', disable=not progress
    )
    for index, s in pool.imap_unordered(_work, todo):
      summaries[index] = s
      bar.update(1)
      bar.set_postfix(tasks=f'{np.mean([x["tasks_done"].any(0).sum() for x in summaries.values()]):.2f}')
    bar.close()
    pool.close()  # workers exit normally and close their renderers
  except BaseException:
    pool.terminate()
    raise
  finally:
    pool.join()
  elapsed = time.time() - start
  ordered = [summaries[i] for i in range(num_episodes)]
  light = [
    dict(
      reward=s['reward'], image=np.zeros((s['length'] + 1, 0), np.uint8), success=s['success'], bc_weight=s['bc_weight']
    )
    for s in ordered
  ]
  data = config.data
  collector = dict(
    kind='kitchen_script',
    seed=config.seed,
    action_noise=data.action_noise,
    waypoint_noise=data.waypoint_noise,
    fail_prob=data.fail_prob,
    full_share=data.full_share,
    bc_tasks=list(data.bc_tasks) or list(TASKS[config.task]),
  )
  if data.get('task_order', 'random') != 'random':
    collector['task_order'] = data.task_order
  extra = dict(
    statistics(ordered, TASKS[config.task]),
    d4rl_goal_set=D4RL_NAMES[config.task],
    generated_episodes=len(todo),
    workers=workers,
    generation_seconds=round(elapsed, 1),
    episodes_per_minute=round(60.0 * len(todo) / elapsed, 2) if todo else None,
  )
  manifest = manifest_lib.write_manifest(out_dir, settings, collector, light, extra)
  _write_contact_sheet(out_dir, ordered, num_episodes)
  return manifest


def _settings(_=None):
  return _WORKER['env'].settings()


def _write_contact_sheet(out_dir: str, summaries: list[dict], num_episodes: int, rows: int = 8):
  """Contact sheet of the episodes completing the most target tasks (ties: lowest index)."""
  counts = [int(s['tasks_done'].any(axis=0).sum()) for s in summaries]
  order = sorted(range(num_episodes), key=lambda i: (-counts[i], i))[:rows]
  episodes = [ep_lib.load_episode(os.path.join(out_dir, ep_lib.episode_name(i))) for i in sorted(order)]
  return manifest_lib.contact_sheet(episodes, os.path.join(out_dir, 'contact_sheet.png'), max_episodes=rows)
