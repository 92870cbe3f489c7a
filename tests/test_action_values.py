"""The true action-value probe (`moto_jax/analysis/action_values.py`): which rollouts it runs, that each
environment gets the demo's prefix, then the branch action, then the policy, that its returns match
a plain sum over what the environment paid, and its pairwise statistics on hand-made returns."""

from conftest import ACTION_DIM, constant_critic, debug_config
import gymnasium
import jax
import numpy as np
import pytest

from moto_jax import agent
from moto_jax.analysis import action_values as av

GAMMA = 0.9


class LoggingEnv:
  """Constant images; reward = 1 where the action's first component is positive, `success` with it;
  truncates after `length` steps; logs every action it is given."""

  def __init__(self, image_shape, length: int):
    self.image = np.zeros(image_shape, np.uint8)
    self.length = length
    self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACTION_DIM,))

  def reset(self, *, seed=None):
    self.seed, self.actions, self.rewards = seed, [], []
    return {'image': self.image.copy()}, {}

  def step(self, action):
    action = np.asarray(action, np.float32)
    reward = float(action[0] > 0)
    self.actions.append(action)
    self.rewards.append(reward)
    return {'image': self.image.copy()}, reward, False, len(self.actions) >= self.length, {'success': reward}


def _demo(length: int, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  actions = rng.uniform(-1, 1, (length + 1, ACTION_DIM)).astype(np.float32)
  actions[0] = 0.0  # the stored convention: action i led to image i
  return {'action': actions, 'image': np.zeros((length + 1, 4, 4, 3), np.uint8)}


def test_branch_jobs_cover_each_point_with_every_branch():
  demos = [(11, _demo(10, 0)), (12, _demo(10, 1))]
  jobs = av.branch_jobs(demos, every=3, noise=0.3, draws=2, margin=2, repeats=2)
  # t = 0, 3, 6 (below 10 - 2) for each demo; per point 2 demo repeats, the policy, 2 perturbed.
  assert [j['t'] for j in jobs if j['branch'] == 'policy'] == [0, 3, 6, 0, 3, 6]
  assert len(jobs) == 6 * 5 and len({j['point'] for j in jobs}) == 6
  for j in jobs:
    seed, ep = demos[j['point'] // 3]
    a = ep['action']
    assert j['seed'] == seed
    np.testing.assert_array_equal(j['prefix'], a[1 : j['t'] + 1])
    if j['branch'] == 'demo':
      np.testing.assert_array_equal(j['action'], a[j['t'] + 1 : j['t'] + 2])
    elif j['branch'] == 'perturbed':
      assert np.all(np.abs(j['action']) <= 1.0) and not np.allclose(j['action'], a[j['t'] + 1 : j['t'] + 2])
    else:
      assert j['action'] is None
  # Held for 3 steps: the demo's next three actions, or those plus one noise vector, the same at each.
  small = dict(demos[0][1], action=0.3 * demos[0][1]['action'])  # no clipping at noise 0.1
  held = av.branch_jobs([(11, small)], every=3, noise=0.1, draws=1, margin=2, repeats=1, hold=3)
  assert [j['t'] for j in held if j['branch'] == 'policy'] == [0, 3, 6]  # 6 + 3 <= 10 - 1
  for j in held:
    block = small['action'][j['t'] + 1 : j['t'] + 4]
    if j['branch'] == 'demo':
      np.testing.assert_array_equal(j['action'], block)
    elif j['branch'] == 'perturbed':
      delta = j['action'] - block
      assert delta.shape == (3, ACTION_DIM) and np.abs(delta[0]).max() > 1e-3
      np.testing.assert_allclose(delta, np.broadcast_to(delta[0], delta.shape), atol=1e-6)


def test_run_jobs_prefix_branch_then_policy_and_the_discounted_return():
  config = debug_config()
  parts = agent.build(config, ACTION_DIM)
  state = agent.create_train_state(parts, jax.random.key(0))
  params = agent.acting_params(state)
  params = {**params, 'critic': constant_critic(params['critic'], 2.5)}
  length = 6
  envs = [LoggingEnv(parts.nets.image_shape, length) for _ in range(4)]
  demo = _demo(length, 3)
  demo['image'] = np.zeros((length + 1,) + tuple(parts.nets.image_shape), np.uint8)
  jobs = av.branch_jobs([(7, demo)], every=2, noise=0.5, draws=1, margin=1, repeats=1, hold=2)  # t = 0, 2
  assert len(jobs) == 6
  # One chunk of 4 environments and the rest: each job's log is read right after its chunk.
  results, logs = [], []
  for c in range(0, len(jobs), len(envs)):
    chunk = jobs[c : c + len(envs)]
    results += av.run_jobs(envs, parts, params, chunk, gamma=GAMMA, key=jax.random.key(1))
    logs += [(np.array(e.actions), np.array(e.rewards)) for e in envs[: len(chunk)]]
  for j, r, (actions, rewards) in zip(jobs, results, logs):
    t = j['t']
    assert len(actions) == length
    np.testing.assert_array_equal(actions[:t], j['prefix'])
    if j['action'] is not None:  # the branch's two actions, then the policy's own (tanh) ones
      np.testing.assert_array_equal(actions[t : t + 2], j['action'])
    assert np.all(np.abs(actions[t + 2 :]) < 1.0)
    expected = sum(GAMMA**k * rewards[t + k] for k in range(length - t))
    assert r['ret'] == pytest.approx(expected)
    assert r['success'] == bool(rewards[t:].any())
    assert r['replay_ok'] and r['q'] == pytest.approx(2.5)
  # The 'policy' branch takes the policy's action at t; the demo branch the demo's.
  policy_job = next(k for k, j in enumerate(jobs) if j['branch'] == 'policy' and j['t'] == 2)
  assert not np.allclose(logs[policy_job][0][2], demo['action'][3])
  # A stored image that the replay does not reproduce is flagged.
  bad = dict(jobs[0], stored=np.full_like(jobs[0]['stored'], 9))
  (res,) = av.run_jobs(envs[:1], parts, params, [bad], gamma=GAMMA, key=jax.random.key(1))
  assert not res['replay_ok']


def test_summarize_counts_preferences_ties_the_floor_and_agreement():
  def jobs_for(point, n_pert):
    return (
      [dict(point=point, branch='demo')] * 2
      + [dict(point=point, branch='policy')]
      + [dict(point=point, branch='perturbed')] * n_pert
    )

  r = lambda ret, q, success=False: dict(ret=ret, q=q, success=success, replay_ok=True)
  jobs = jobs_for(0, 2) + jobs_for(1, 2)
  results = [
    # point 0: demo 1.0 (again 1.0), policy 2.0; perturbed 0.5 (critic agrees) and 1.0 (a tie)
    r(1.0, 3.0, True), r(1.0, 3.1), r(2.0, 3.5), r(0.5, 2.0), r(1.0, 4.0),
    # point 1: demo 0.0 (again 0.4), policy 0.0; perturbed 0.3 (critic disagrees) and 0.0 (tie)
    r(0.0, 1.0), r(0.4, 1.0), r(0.0, 0.5), r(0.3, 0.0), r(0.0, 2.0),
  ]  # fmt: skip
  s = av.summarize(jobs, results)
  assert (s['points'], s['pairs']) == (2, 4)
  assert s['true_prefers_demo'] == 0.25 and s['true_prefers_perturbed'] == 0.25 and s['true_tie'] == 0.5
  assert s['true_abs_diff'] == pytest.approx((0.5 + 0 + 0.3 + 0) / 4)
  assert s['true_mean_diff'] == pytest.approx((0.5 + 0 - 0.3 + 0) / 4)
  assert s['true_mean_diff_se'] == pytest.approx(np.std([0.5, 0, -0.3, 0], ddof=1) / 2)
  assert s['repeat_differ'] == 0.5 and s['repeat_abs_diff'] == pytest.approx(0.2)
  assert s['q_prefers_demo'] == 0.5  # +1.0, -1.0, +1.0, -1.0
  assert (s['q_agrees'], s['q_agrees_pairs']) == (0.5, 2)  # point 0: both +; point 1: dG -0.3, dQ +1.0
  assert s['policy_beats_demo'] == 0.5 and s['policy_loses_to_demo'] == 0.0
  assert s['policy_q_agrees'] == 1.0  # point 0: dG +1.0, dQ +0.5
  assert s['policy_mean_diff'] == pytest.approx(0.5) and s['q_mean_diff'] == pytest.approx(0.0)
  assert s['demo_return'] == 0.5 and s['demo_success'] == 0.5
