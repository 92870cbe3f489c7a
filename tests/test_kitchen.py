"""Franka Kitchen: pixel env (observations, reward, seeding, errors), scripted sub-tasks, play data."""

import os

os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np
import pytest

from configs import kitchen as kitchen_config
from moto_jax.data import episodes as ep_lib
from moto_jax.suites.kitchen import EXPERT_ORDER
from moto_jax.suites.kitchen import collect as kitchen_collect
from moto_jax.suites.kitchen import env as kitchen_env
from moto_jax.suites.kitchen import script as kitchen_script
from moto_jax.suites.kitchen.env import ALL_SUBTASKS, TASKS, KitchenEnv, check_task


@pytest.fixture(scope='module')
def env():
  e = KitchenEnv('mixed', seed=0)
  yield e
  e.close()


def test_config_presets_and_errors():
  c = kitchen_config.get_config('partial,debug')
  assert (c.domain, c.task, c.preset) == ('kitchen', 'partial', 'debug')
  assert c.env.episode_length == 20 and c.env.action_repeat == 1 and c.env.camera == 'authors'
  assert tuple(c.data.bc_tasks) == TASKS['partial'][:3]
  assert kitchen_config.get_config(None).task == 'mixed'
  assert kitchen_config.get_config('mixed').data.bc_tasks == ()
  with pytest.raises(ValueError, match="'complete'"):
    kitchen_config.get_config('complete')


def test_unknown_task_lists_valid_names():
  with pytest.raises(ValueError, match="Unknown Franka Kitchen task 'complete'.*'mixed'.*'partial'"):
    check_task('complete')
  with pytest.raises(ValueError, match="camera='top'"):
    KitchenEnv('mixed', camera='top')


def test_observation_shape_dtype(env):
  obs, info = env.reset(seed=1)
  assert set(obs) == {'image'}  # no proprioception
  assert obs['image'].shape == (64, 64, 3) and obs['image'].dtype == np.uint8
  assert obs['image'].max() > obs['image'].min()
  assert env.observation_space.contains(obs)
  assert info['tasks_done'].shape == (4,) and info['all_done'].shape == (len(ALL_SUBTASKS),)
  assert env.settings()['render']['camera']['distance'] == 1.86  # the authors' top-down view
  assert env.settings()['render']['camera']['elevation'] == -60.0
  from moto_jax import suites

  assert suites.action_dim(kitchen_config.get_config('mixed,debug')) == env.action_space.shape[0] == 9


def test_same_seed_gives_identical_images(env):
  actions = np.random.default_rng(0).uniform(-1, 1, (6, 9))

  def run(seed):
    frames = [env.reset(seed=seed)[0]['image']]
    frames += [env.step(a)[0]['image'] for a in actions]
    return np.stack(frames)

  a, b = run(7), run(7)
  np.testing.assert_array_equal(a, b)
  assert (a[0] != a[-1]).any()  # the arm moved


def test_decimated_arm_meshes_draw_nearly_the_same_picture(env):
  """mesh_faces: the renderer draws a copy whose large meshes (the arm's 12-22k faces each) have at
  most that many faces; the physics model keeps its meshes, the motion is identical, the picture
  nearly so, and the dataset settings record it."""
  shipped_faces = env.model.mesh_facenum.copy()
  lite = KitchenEnv('mixed', seed=0, mesh_faces=1000)
  try:
    assert len(lite.renderer.decimated) >= 8  # the arm's links
    assert all(before > 1000 >= after > 0 for before, after in lite.renderer.decimated.values())
    before = sum(b for b, _ in lite.renderer.decimated.values())
    assert sum(a for _, a in lite.renderer.decimated.values()) < 0.1 * before
    np.testing.assert_array_equal(lite.model.mesh_facenum, shipped_faces)  # the simulated model as shipped
    actions = np.random.default_rng(1).uniform(-1, 1, (8, 9))
    frames = {}
    for name, e in (('shipped', env), ('lite', lite)):
      obs = [e.reset(seed=3)[0]['image']] + [e.step(a)[0]['image'] for a in actions]
      frames[name] = (np.stack(obs).astype(np.float64), e.data.qpos.copy())
    np.testing.assert_array_equal(frames['shipped'][1], frames['lite'][1])
    diff = np.abs(frames['shipped'][0] - frames['lite'][0])
    assert 0 < diff.mean() < 2.0, diff.mean()  # of 255: the same scene, the arm's outline a little coarser
    assert lite.settings()['render']['mesh_faces'] == 1000 and 'mesh_faces' not in env.settings()['render']
    assert kitchen_config.get_config('mixed').env.mesh_faces == 1000
  finally:
    lite.close()
  with pytest.raises(ValueError, match='mesh_faces=-1'):
    KitchenEnv('mixed', mesh_faces=-1)


def test_reward_counts_target_tasks_in_goal(env):
  import mujoco

  env.reset(seed=0)
  _, reward, _, _, info = env.step(np.zeros(9))
  assert reward == 0.0 and not info['tasks_done'].any()
  # Put the microwave (target 0) and slide cabinet (target 3) in goal state, and the
  # bottom burner knob (not a 'mixed' target) too.
  env.data.qpos[22] = -0.75
  env.data.qpos[19] = 0.37
  env.data.qpos[11] = -0.88
  mujoco.mj_forward(env.model, env.data)
  _, reward, terminated, _, info = env.step(np.zeros(9))
  np.testing.assert_array_equal(info['tasks_done'], [True, False, False, True])
  assert reward == 2.0 == info['tasks_done'].sum() and info['success'] == 0.0 and not terminated
  assert info['all_done'][ALL_SUBTASKS.index('bottom burner')]
  _, reward, _, _, _ = env.step(np.zeros(9))
  assert reward == 2.0  # paid at every step, tasks not removed


def test_progress_is_the_fraction_of_the_way_to_the_goal_region(env):
  import mujoco

  _, info = env.reset(seed=0)
  np.testing.assert_array_equal(info['tasks_progress'], np.zeros(4))
  start = kitchen_env.goal_distances(env.data.qpos, env.target_tasks)
  assert (start > kitchen_env.GOAL_THRESHOLD).all()  # nothing starts in its goal region
  # The microwave door (qpos 22, goal -0.75) a quarter of the way from its start to the goal region,
  # the slide cabinet (qpos 19, goal 0.37) in it, the light switch moved away from its goal.
  env.data.qpos[22] = -(start[0] - kitchen_env.GOAL_THRESHOLD) * 0.25 + env.data.qpos[22]
  env.data.qpos[19] = 0.37
  env.data.qpos[17] += 0.2
  mujoco.mj_forward(env.model, env.data)
  moved = env._info()['tasks_progress']
  assert moved.dtype == np.float32 and moved.shape == (4,)
  np.testing.assert_allclose(moved[[0, 3]], [0.25, 1.0], atol=1e-5)
  assert moved[1] == 0.0 and moved[2] == 0.0  # untouched; moved away counts as 0, not negative
  np.testing.assert_allclose(
    kitchen_env.progress(np.array([2.0, 0.3, 0.1, 3.0]), np.array([1.3, 1.3, 1.3, 1.3])), [0.0, 1.0, 1.0, 0.0]
  )
  # An object that starts in its goal region and stays there is done: progress 1.
  np.testing.assert_array_equal(kitchen_env.progress(np.array([0.1, 0.4]), np.array([0.2, 0.2])), [1.0, 0.0])


@pytest.mark.parametrize('name', kitchen_script.SCRIPTED_SUBTASKS)
def test_scripted_subtask_reaches_goal_from_reset(env, name):
  env.reset(seed=0)
  policy = kitchen_script.PlayScript(env, [name], np.random.default_rng(0))
  index = ALL_SUBTASKS.index(name)
  reached = False
  for _ in range(env.episode_length):
    _, _, _, _, info = env.step(policy(None, info=None))
    reached = reached or bool(info['all_done'][index])
    if policy.finished:
      break
  assert policy.finished, f'{name}: script did not finish within {env.episode_length} steps'
  assert reached and info['all_done'][index], f'{name}: not in goal state'


def test_unknown_subtask_script_raises(env):
  ctrl = kitchen_script.ArmController(env.model, env.data)
  with pytest.raises(ValueError, match="'hinge cabinet'"):
    kitchen_script.SubtaskScript('hinge cabinet', ctrl)


def test_plans():
  rng = np.random.default_rng(0)
  for task in ('mixed', 'partial'):
    targets, bc = TASKS[task], kitchen_config.get_config(task).data.bc_tasks
    for _ in range(300):
      seq, aborts = kitchen_collect.plan_episode(targets, bc, task, rng, full_share=0.0, fail_prob=0.2)
      assert 2 <= len(seq) <= 4 and len(set(seq)) == len(seq) and len(aborts) == len(seq)
      assert not set(targets) <= set(seq)
    seq, _ = kitchen_collect.plan_episode(targets, bc, task, rng, full_share=1.0, fail_prob=0.0)
    if task == 'mixed':
      assert sorted(seq) == sorted(targets)
    else:
      assert set(bc) <= set(seq) and not set(targets) <= set(seq)


def test_fixed_order_plans_sort_the_same_draws():
  """`data.task_order='fixed'`: the random plan's sub-tasks and aborts, in one order for every episode."""
  for task in ('mixed', 'partial'):
    targets, bc = TASKS[task], kitchen_config.get_config(task).data.bc_tasks
    rank = kitchen_collect.fixed_rank(task)
    assert sorted(rank, key=rank.get)[-4:] == list(EXPERT_ORDER[task])
    for seed in range(50):
      plans = [
        kitchen_collect.plan_episode(targets, bc, task, np.random.default_rng(seed), 0.5, 0.2, order=order)
        for order in ('random', 'fixed')
      ]
      (seq, aborts), (fixed, fixed_aborts) = plans
      assert sorted(fixed) == sorted(seq) and fixed == sorted(seq, key=rank.get)
      assert [a is None for a in aborts] == [a is None for a in fixed_aborts]
  with pytest.raises(ValueError, match='task_order'):
    kitchen_collect.plan_episode(targets, bc, task, np.random.default_rng(0), 0.5, 0.2, order='sorted')


def test_segment_weights_by_hand():
  """Targets (a, b, c, d); b first done at step 3, d at 7 (and held), a done already at the reset
  (no segment), c never: steps 0-2 lead to b, 3-6 to d, 7-9 lead nowhere."""
  targets = ('a', 'b', 'c', 'd')
  done = np.zeros((10, 4), bool)
  done[:, 0] = True
  done[3:, 1] = True
  done[7:, 3] = True
  np.testing.assert_array_equal(kitchen_collect.segment_weights(done, targets), [1] * 7 + [0] * 3)
  # Only the bc_tasks count: with (b,) the segment ends at b's completion.
  np.testing.assert_array_equal(kitchen_collect.segment_weights(done, targets, ('b',)), [1] * 3 + [0] * 7)
  assert not kitchen_collect.segment_weights(np.zeros((5, 4), bool), targets).any()
  config = kitchen_config.get_config('mixed,debug').unlock()
  from moto_jax import suites

  assert config.data.bc_segments is True  # the Kitchen default; the paper preset keeps the paper's rule
  assert kitchen_config.get_config('partial,paper').data.bc_segments is False
  config.data.bc_segments = False  # the paper's whole-episode rule: no per-step weights
  assert suites.get('kitchen').step_weights(config) is None
  config.data.bc_segments = True
  weights = suites.get('kitchen').step_weights(config)
  episode = {'tasks_done': done}
  np.testing.assert_array_equal(weights(episode), [1] * 7 + [0] * 3)


def test_bc_predicate():
  targets = TASKS['partial']
  done = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]], bool)
  assert kitchen_collect.bc_predicate(done, targets, targets[:3])  # row 1
  assert not kitchen_collect.bc_predicate(done, targets, ())  # never all four at once
  assert not kitchen_collect.bc_predicate(done[[0, 2]], targets, targets[:3])
  with pytest.raises(ValueError, match='slide cabinet'):
    kitchen_collect.bc_predicate(done, targets, ('slide cabinet',))


def test_partial_dataset_never_solves_all_four(tmp_path):
  config = kitchen_config.get_config('partial').unlock()
  config.data.full_share = 1.0  # every episode attempts the three bc tasks
  config.data.fail_prob = 0.0
  out = str(tmp_path)
  m = kitchen_collect.collect_kitchen(config, out, num_episodes=3, workers=2, progress=False)
  files = ep_lib.episode_files(out)
  assert [os.path.basename(f) for f in files] == [ep_lib.episode_name(i) for i in range(3)]
  for f in files:
    e = ep_lib.load_episode(f)
    assert e['tasks_done'].shape == (len(e['image']), 4) and e['subtasks_done'].shape[1] == len(ALL_SUBTASKS)
    np.testing.assert_array_equal(e['reward'][1:], e['tasks_done'][1:].sum(1))
    assert not e['tasks_done'].all(axis=1).any() and not e['success']
    assert float(e['bc_weight']) == float(e['tasks_done'][:, :3].all(axis=1).any())
    assert len(e['image']) <= config.env.episode_length + 1
  assert m['success_rate'] == 0.0 and m['episodes'] == 3 and m['generated_episodes'] == 3
  assert m['episodes_by_target_tasks_completed'][4] == 0
  assert m['average_target_tasks_completed'] > 1.0  # the scripts mostly work
  assert m['paper_app_c2']['trajectories'] == 3
  assert os.path.exists(os.path.join(out, 'contact_sheet.png'))
  # Resumes: nothing left to generate.
  again = kitchen_collect.collect_kitchen(config, out, num_episodes=3, workers=1, progress=False)
  assert again['generated_episodes'] == 0 and again['transitions'] == m['transitions']


def test_composition_context_and_cut_by_hand():
  from moto_jax.analysis import composition

  flags = np.zeros((10, 4), bool)
  flags[2:, 0] = True
  flags[4:6, 1] = True  # in goal for two steps only: still counts as completed
  flags[7:, 2] = True
  flags[8:, 3] = True
  assert composition.context_lengths([flags], 3) == [8]  # third target first at step 7: observe 0..7
  with pytest.raises(ValueError, match='completes 4 targets before its last step; needs 5'):
    composition.context_lengths([flags], 5)
  e = {'image': np.zeros((10, 2, 2, 3)), 'tasks_done': flags, 'reward': np.arange(10.0), 'success': np.array(True)}
  cut = composition.cut_after(e, 1)
  assert len(cut['image']) == 10 and len(cut['reward']) == 10  # never all four at once: not cut
  cut = composition.cut_after(
    {
      **e,
      'image': np.zeros((20, 2, 2, 3)),
      'reward': np.arange(20.0),
      'tasks_done': np.concatenate([flags, np.ones((10, 4), bool)]),
    },
    2,
  )
  assert len(cut['image']) == 13 and cut['reward'][-1] == 12 and cut['success']  # all four at 10: 10 + 2 + 1


def test_expert_order_finishes_every_target_task():
  from moto_jax.suites.kitchen import EXPERT_ORDER, TARGET_TASKS

  assert {k: set(v) for k, v in EXPERT_ORDER.items()} == {k: set(v) for k, v in TARGET_TASKS.items()}
  # 'partial': the three tasks its data covers (the BC tasks) first, the light switch last (App. A.1).
  assert set(EXPERT_ORDER['partial'][:3]) == set(kitchen_config.get_config('partial').data.bc_tasks)
  assert EXPERT_ORDER['partial'][3] == 'light switch'


def test_evaluation_counts_each_target_task():
  """Per-target completion rates and how many episodes completed exactly k targets, from the
  per-step flags; a target done once and undone later counts as completed."""
  from moto_jax.training import evaluation

  def episode(flags):  # flags [T+1, 4]
    flags = np.asarray(flags, bool)
    n = len(flags)
    return dict(
      success=flags.any(0).all(), reward=flags.sum(1).astype(np.float32), action=np.zeros((n, 9)), tasks_done=flags
    )

  episodes = [
    episode([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]),  # microwave, then undone
    episode([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]),
    episode([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    episode([[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]),
  ]
  names = TASKS['mixed']
  s = evaluation.summarize(evaluation.episode_rows(episodes), names)
  rates = [s[f'eval/task_{n.replace(" ", "_")}'] for n in names]
  assert 'eval/task_light_switch' in s
  np.testing.assert_allclose(rates, [0.75, 0.5, 0.25, 0.25])
  np.testing.assert_allclose([s[f'eval/episodes_{k}_tasks'] for k in range(5)], [0.25, 0.25, 0.25, 0.0, 0.25])
  assert s['eval/tasks_completed'] == (1 + 2 + 0 + 4) / 4 and s['eval/tasks_at_end'] == (0 + 2 + 0 + 4) / 4
  assert s['eval/success_rate'] == 0.25
  # The first target in goal: microwave at step 1 in episodes 0, 1 (with kettle: the first in order)
  # and 3; none in episode 2.
  assert [s[f'eval/first_task_{n.replace(" ", "_")}'] for n in names] == [0.75, 0.0, 0.0, 0.0]
  assert s['eval/first_task_step'] == 1.0
  assert 'eval/task_microwave' not in evaluation.summarize(evaluation.episode_rows(episodes))  # no names given


def test_evaluation_and_episode_records_report_each_targets_progress():
  """`eval/progress_<name>`: the mean over episodes of each object's largest progress toward its goal;
  the exploring episode's record the same for one episode."""
  from moto_jax.training import evaluation, loop

  def episode(progress):  # progress [T+1, 4]
    progress = np.asarray(progress, np.float32)
    n = len(progress)
    return dict(
      success=np.array(False),
      reward=np.zeros(n, np.float32),
      action=np.zeros((n, 9)),
      tasks_done=progress >= 1.0,
      tasks_progress=progress,
    )

  episodes = [
    episode([[0, 0, 0, 0], [0.5, 0, 0, 1.0], [0.2, 0, 0.1, 1.0]]),  # microwave half way, then back
    episode([[0, 0, 0, 0], [0.1, 0, 0.3, 1.0], [0.1, 0, 0, 0.4]]),
  ]
  names = TASKS['mixed']
  s = evaluation.summarize(evaluation.episode_rows(episodes), names)
  np.testing.assert_allclose([s[f'eval/progress_{n.replace(" ", "_")}'] for n in names], [0.3, 0.0, 0.2, 1.0])
  assert s['eval/task_slide_cabinet'] == 1.0 and s['eval/task_microwave'] == 0.0
  r = loop.episode_record(episodes[0], names)
  assert r['episode/progress_microwave'] == 0.5 and r['episode/progress_light_switch'] == np.float32(0.1)
  assert r['episode/tasks_completed'] == 1.0
