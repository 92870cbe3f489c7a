"""What one changed action is really worth, against what the critic says (`launch.evaluate --action_values`).

The demo diagnostics ask whether the critic ranks the expert's action above a perturbed one
(`diag/q_prefers_demo`); this asks the environment. Each offline demo is replayed from its reset seed
with its own actions up to a step t (the simulator is deterministic: the replayed images are checked
against the stored ones), where the environment takes one of the branch actions

  * `demo`: the demo's own action a_t, twice (`repeats`): the policy's posterior is sampled, so the
    same action can end differently, and the two repeats measure that floor;
  * `policy`: the run's acting policy's action there (its mode, as in evaluation);
  * `perturbed`: a_t plus Gaussian noise of std `noise`, clipped to [-1, 1], `draws` times;

(with `hold` = k > 1 the branch lasts k steps: the demo's next k actions, or those plus one noise
vector held for all k, a consistent change as a policy update would make, not k independent ones;
the critic's Q then still reads the first of the k actions only)

and from t + 1 on the acting policy (its mode) to the episode's end. The discounted return from t,
G(a) = sum_k gamma^k r_{t+1+k}, is the true Q^pi(s_t, a) of that deterministic policy, up to the
time limit (no bootstrap after it). The critic's min_j Q_j(z_t, a) is read at the posterior state
the policy's world model filtered along the same replayed images and actions.

The summary says how often the true return prefers the demo's action to a perturbed one (and how
often the two tie: with a sparse success reward both branches often succeed or fail alike), how
large the difference is against G and against the floor of two repeats of the same action, whether
the critic ranks each pair as the environment does, and how the policy's own action compares with
the demo's.
"""

from __future__ import annotations

import json
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from moto_jax import agent, suites
from moto_jax.agent import policy as policy_lib
from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.data import rollout as rollout_lib
from moto_jax.networks import rssm as rssm_lib
from moto_jax.training import offline_data, restore

TIE = 1e-6  # returns closer than this are a tie (sparse rewards give exact ties)


def branch_jobs(
  demos: list[tuple[int, dict]],
  *,
  every: int,
  noise: float,
  draws: int,
  margin: int,
  repeats: int = 2,
  hold: int = 1,
  seed: int = 0,
):
  """The rollouts to run: for each demo (its reset seed, the episode) and each step t = 0, every,
  2 every, ... below its length minus `margin` (and `hold`), one job per branch. A job is a dict with
  `seed`, `t`, `prefix` (the demo's actions before t, [t, A]), `branch` ('demo', 'policy' or
  'perturbed'), `action` (the branch's actions from t on, [hold, A]: the demo's a_t .. a_{t+hold-1},
  or those plus one noise vector, the same at each of the `hold` steps, a consistent change; None for
  'policy': the policy's own), `point` (the index of its (demo, t)) and `stored` (the demo's image
  at t, to check the replay)."""
  rng = np.random.default_rng(seed)
  jobs, point = [], 0
  for reset_seed, ep in demos:
    actions = np.asarray(ep['action'], np.float32)  # action i led to image i; a_t is actions[t + 1]
    for t in range(0, len(actions) - 1 - max(margin, hold), every):
      base = dict(seed=reset_seed, t=t, prefix=actions[1 : t + 1], point=point, stored=ep['image'][t])
      a_t = actions[t + 1 : t + 1 + hold]
      for _ in range(repeats):
        jobs.append(dict(base, branch='demo', action=a_t))
      jobs.append(dict(base, branch='policy', action=None))
      for _ in range(draws):
        pert = np.clip(a_t + noise * rng.standard_normal(a_t.shape[1:]), -1.0, 1.0).astype(np.float32)
        jobs.append(dict(base, branch='perturbed', action=pert))
      point += 1
  return jobs


class _StepSuccess:
  """`env` whose episodes also record each step's `info['success']` as `step_success` (the rollout
  records the `STEP_INFO` an environment names), 0 where the environment gives none."""

  STEP_INFO = {'step_success': 'success'}

  def __init__(self, env):
    self.env, self.action_space = env, env.action_space

  def reset(self, **kwargs):
    obs, info = self.env.reset(**kwargs)
    return obs, {**info, 'success': float(info.get('success', 0.0))}

  def step(self, action):
    obs, reward, terminated, truncated, info = self.env.step(action)
    return obs, reward, terminated, truncated, {**info, 'success': float(info.get('success', 0.0))}


def run_jobs(envs: list, parts, params, jobs: list[dict], *, gamma: float, key: jax.Array, log=None) -> list[dict]:
  """Runs `jobs` (`branch_jobs`) len(envs) at a time through `rollout_lib.rollout_batch` (lock step,
  one batched policy call per step).

  Returns per job {'ret': G, 'success': any success after t, 'q': min_j Q_j(z_t, executed a_t),
  'replay_ok': the image at t equals the stored one}. The posterior step always gets the action the
  environment took (the demo's, the branch's or the policy's), as when the policy acts itself.
  """
  act = policy_lib.make_act_fn(parts)
  nets = parts.nets

  @jax.jit
  def q_min(critic_params, deter, stoch, action):
    feat = rssm_lib.feature({'deter': deter, 'stoch': stoch})
    return jnp.min(nets.q_values(critic_params, feat, action), axis=0)

  envs = [_StepSuccess(env) for env in envs]
  out, start = [], time.perf_counter()
  for c in range(0, len(jobs), len(envs)):
    chunk = jobs[c : c + len(envs)]
    carry = policy_lib.init_carry(parts.config, len(envs), parts.action_dim)
    q = np.full(len(envs), np.nan)
    step = 0

    def policy_fn(images, is_first):
      nonlocal carry, key, step
      key, sub = jax.random.split(key)
      carry, action = act(params, carry, images, is_first, sub, explore=False)
      executed = np.array(action)
      for k, j in enumerate(chunk):
        if step < j['t']:
          executed[k] = j['prefix'][step]
        elif j['action'] is not None and step - j['t'] < len(j['action']):
          executed[k] = j['action'][step - j['t']]
      at = [k for k, j in enumerate(chunk) if j['t'] == step]
      if at:
        q[at] = np.asarray(q_min(params['critic'], carry['deter'], carry['stoch'], jnp.asarray(executed)))[at]
      carry = {**carry, 'action': jnp.asarray(executed)}
      step += 1
      return executed

    episodes = rollout_lib.rollout_batch(envs, policy_fn, [j['seed'] for j in chunk])
    for k, (j, ep) in enumerate(zip(chunk, episodes)):
      t = j['t']
      rewards = np.asarray(ep['reward'][t + 1 :], np.float64)  # reward i came with image i
      out.append(
        dict(
          ret=float(np.sum(gamma ** np.arange(len(rewards)) * rewards)),
          success=bool(ep['step_success'][t + 1 :].any()),
          q=float(q[k]),
          replay_ok=bool(np.array_equal(ep['image'][t], j['stored'])),
        )
      )
    if log:
      log(f'  {len(out)}/{len(jobs)} rollouts, {time.perf_counter() - start:.0f} s')
  return out


def summarize(jobs: list[dict], results: list[dict]) -> dict:
  """The pairwise statistics of the module docstring from `branch_jobs` and `run_jobs`' results."""
  by_point: dict[int, dict] = {}
  for j, r in zip(jobs, results):
    by_point.setdefault(j['point'], {}).setdefault(j['branch'], []).append(r)
  true_d, q_d, pol_d, pol_q, floor = [], [], [], [], []
  returns = []
  for p in by_point.values():
    demo = p['demo'][0]
    returns.append(demo['ret'])
    floor += [demo['ret'] - again['ret'] for again in p['demo'][1:]]
    for pert in p.get('perturbed', []):
      true_d.append(demo['ret'] - pert['ret'])
      q_d.append(demo['q'] - pert['q'])
    pol = p['policy'][0]
    pol_d.append(pol['ret'] - demo['ret'])
    pol_q.append(pol['q'] - demo['q'])
  true_d, q_d, pol_d, pol_q, floor = map(np.asarray, (true_d, q_d, pol_d, pol_q, floor))
  mean_se = lambda x: (
    (float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(x.size))) if x.size > 1 else (float('nan'),) * 2
  )
  differ = np.abs(true_d) > TIE
  agree = np.sign(q_d[differ]) == np.sign(true_d[differ])
  pol_differ = np.abs(pol_d) > TIE
  return {
    'points': len(by_point),
    'pairs': int(true_d.size),
    'replay_ok': float(np.mean([r['replay_ok'] for r in results])),
    'demo_return': float(np.mean(returns)),
    'demo_success': float(np.mean([p['demo'][0]['success'] for p in by_point.values()])),
    # The environment: does the demo's action beat a perturbed one, lose, or tie?
    'true_prefers_demo': float(np.mean(true_d > TIE)),
    'true_prefers_perturbed': float(np.mean(true_d < -TIE)),
    'true_tie': float(np.mean(~differ)),
    'true_abs_diff': float(np.mean(np.abs(true_d))),
    # E[G(demo) - G(perturbed)] over the pairs and its standard error (the pairs of one point share
    # the demo's rollout; the error treats them as independent).
    **dict(zip(('true_mean_diff', 'true_mean_diff_se'), mean_se(true_d))),
    # The same action twice: how often and by how much the returns differ by the policy's own chance.
    'repeat_differ': float(np.mean(np.abs(floor) > TIE)) if floor.size else float('nan'),
    'repeat_abs_diff': float(np.mean(np.abs(floor))) if floor.size else float('nan'),
    # The critic on the same pairs: its own preference, and agreement where the environment differs.
    'q_prefers_demo': float(np.mean(q_d > 0)),
    'q_abs_diff': float(np.mean(np.abs(q_d))),
    'q_mean_diff': float(np.mean(q_d)),
    'q_agrees': float(np.mean(agree)) if agree.size else float('nan'),
    'q_agrees_pairs': int(agree.size),
    # The policy's own action against the demo's (improvement beyond the data, as the world sees it).
    'policy_beats_demo': float(np.mean(pol_d > TIE)),
    'policy_loses_to_demo': float(np.mean(pol_d < -TIE)),
    **dict(zip(('policy_mean_diff', 'policy_mean_diff_se'), mean_se(pol_d))),
    'policy_q_agrees': float(np.mean(np.sign(pol_q[pol_differ]) == np.sign(pol_d[pol_differ])))
    if pol_differ.any()
    else float('nan'),
  }


def demo_seeds(data_dir: str) -> list[tuple[int, dict]]:
  """(reset seed, episode) of each episode in `data_dir` that carries the behaviour prior. The seed is
  `episode_seed(collector seed, i)` for episode_<i>, as `Suite.collect` wrote it."""
  manifest = manifest_lib.read_manifest(data_dir) or {}
  collector_seed = (manifest.get('collector') or {}).get('seed')
  if collector_seed is None:
    raise ValueError(f'{data_dir}: its manifest records no collector seed, so its episodes cannot be replayed')
  out = []
  for f in ep_lib.episode_files(data_dir):
    ep = ep_lib.load_episode(f)
    if not ep_lib.carries_prior(ep):
      continue
    m = re.search(r'(\d+)\.npz$', os.path.basename(f))
    if m is None:
      raise ValueError(f'{f}: no episode index in the name, so its reset seed is unknown')
    out.append((rollout_lib.episode_seed(int(collector_seed), int(m.group(1))), ep))
  return out


def action_values(
  workdir: str,
  steps: list[int | None] = (None,),
  *,
  every: int = 20,
  noise: float = 0.3,
  draws: int = 2,
  repeats: int = 2,
  hold: int = 1,
  margin: int = 50,
  max_demos: int = 10,
  envs: int = 16,
  data_dir: str | None = None,
  log=print,
) -> list[dict]:
  """The probe of the module docstring on each checkpoint of `steps` (None: the latest) of `workdir`,
  with one set of demos, rollouts and environments for all. Writes `<workdir>/action_values_<step>.json`
  (`action_values_hold<k>_<step>.json` for hold k > 1) and returns those records."""
  config = restore.load_config(workdir)
  parts = agent.build(config, suites.action_dim(config))
  data_dir = data_dir or offline_data.resolve(config, log=log)
  demos = demo_seeds(data_dir)[:max_demos]
  if not demos:
    raise ValueError(f'{data_dir} holds no episode that carries the behaviour prior: no demos to replay')
  jobs = branch_jobs(
    demos, every=every, noise=noise, draws=draws, margin=margin, repeats=repeats, hold=hold, seed=int(config.seed)
  )
  settings = dict(demos=len(demos), every=every, noise=noise, draws=draws, repeats=repeats, hold=hold, margin=margin)
  env_list = [suites.make_env(config) for _ in range(min(envs, len(jobs)))]
  try:
    return [_probe_one(workdir, parts, env_list, jobs, step, config.agent.gamma, settings, log) for step in steps]
  finally:
    for env in env_list:
      env.close()


def _probe_one(workdir, parts, envs, jobs, step, gamma: float, settings: dict, log) -> dict:
  """`jobs` on checkpoint `step`: one record, printed and written (`action_values`)."""
  hold = settings['hold']
  _, state, counters, step, _ = restore.load_run(workdir, step, parts)
  log(f'Checkpoint {step}: {len(jobs)} rollouts from {settings["demos"]} demos ({len(envs)} environments in lock step)')
  start = time.perf_counter()
  results = run_jobs(envs, parts, agent.acting_params(state), jobs, gamma=gamma, key=jax.random.PRNGKey(0), log=log)
  record = dict(
    step=step,
    counters=counters.to_json(),
    **settings,
    seconds=round(time.perf_counter() - start, 1),
    **summarize(jobs, results),
    rows=[
      dict(point=j['point'], t=j['t'], branch=j['branch'], ret=r['ret'], q=r['q'], success=r['success'])
      for j, r in zip(jobs, results)
    ],
  )
  if record['replay_ok'] < 1.0:
    log(f'  warning: {1 - record["replay_ok"]:.0%} of the replays did not reproduce the stored image at t')
  log(
    f'Checkpoint {step}: the environment prefers the demo action to a perturbed one (std {settings["noise"]}'
    f'{f", held {hold} steps" if hold > 1 else ""}) in '
    f'{record["true_prefers_demo"]:.2f} of {record["pairs"]} pairs, the perturbed in '
    f'{record["true_prefers_perturbed"]:.2f}, ties {record["true_tie"]:.2f} (mean dG {record["true_mean_diff"]:+.2f} '
    f'+- {record["true_mean_diff_se"]:.2f}, mean |dG| {record["true_abs_diff"]:.2f}, '
    f'G {record["demo_return"]:.2f}; the same action twice differs in {record["repeat_differ"]:.2f}, mean |dG| '
    f'{record["repeat_abs_diff"]:.3f}); the critic prefers the demo in {record["q_prefers_demo"]:.2f} '
    f'(mean |dQ| {record["q_abs_diff"]:.3f}) and agrees with the environment in {record["q_agrees"]:.2f} of the '
    f"{record['q_agrees_pairs']} pairs that differ; the policy's action beats the demo's in "
    f'{record["policy_beats_demo"]:.2f}, loses in {record["policy_loses_to_demo"]:.2f} (mean dG '
    f'{record["policy_mean_diff"]:+.2f} +- {record["policy_mean_diff_se"]:.2f})'
  )
  name = f'action_values_{step}.json' if hold == 1 else f'action_values_hold{hold}_{step}.json'
  with open(os.path.join(workdir, name), 'w') as f:
    json.dump(record, f, indent=2)
  return record
