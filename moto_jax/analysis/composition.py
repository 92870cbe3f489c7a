"""Compositional generalisation of the world model (App. A.1), on a run trained on Kitchen 'partial'.

The 'partial' data never completes all four target tasks together. Take episodes that do (the
suite's noise-free scripted expert runs the four targets in order), condition the model on the
frames up to the step at which the third target has been completed, and then

* roll the recorded actions open-loop through the prior: predicted frames beside the truth (GIF)
  and the predicted reward against the true count of targets in goal (the paper: predicted rewards
  up to 4, mean 3.63, although no training episode exceeds 3);
* roll the run's acting policy inside the model from the same state, as far: its predicted final
  reward (the paper: 3.52).

Deterministic: the posterior and the prior take their most likely class, the prior uses ensemble
head 0, and the policy its mode. Writes `<workdir>/composition/composition_<step>.{gif,png,json}`.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from moto_jax import agent, suites
from moto_jax.analysis.openloop import tile
from moto_jax.data import episodes as ep_lib
from moto_jax.networks import rssm as rssm_lib
from moto_jax.training import evaluation, offline_data, restore


def context_lengths(tasks_done: list[np.ndarray], observed_tasks: int) -> list[int]:
  """Frames to observe per episode: up to and including the first step at which `observed_tasks`
  different targets have been in goal state (flags [T+1, K]); ValueError if an episode never gets there."""
  out = []
  for i, flags in enumerate(tasks_done):
    completed = np.logical_or.accumulate(np.asarray(flags, bool), axis=0).sum(axis=1)  # [T+1]
    reached = np.nonzero(completed >= observed_tasks)[0]
    if not len(reached) or reached[0] + 1 >= len(flags):
      raise ValueError(
        f'Episode {i} completes {completed.max()} targets before its last step; '
        f'needs {observed_tasks} with steps left to predict'
      )
    out.append(int(reached[0]) + 1)
  return out


def cut_after(episode: dict, after: int) -> dict:
  """The episode up to `after` steps past the first step with every target in goal."""
  done = np.nonzero(np.asarray(episode['tasks_done'], bool).all(axis=1))[0]
  end = len(episode['image']) if not len(done) else min(len(episode['image']), int(done[0]) + after + 1)
  return {
    k: (v[:end] if isinstance(v, np.ndarray) and v.ndim and len(v) == len(episode['image']) else v)
    for k, v in episode.items()
  }


def make_rollouts(nets, steps: int):
  """A jitted `fn(params, acting, batch, context [B]) -> dict`: from the posterior mode at frame
  context-1, `steps` prior steps on the recorded actions a_{context..} ('feat', 'reward') and on
  the acting policy's modes ('policy_reward'), all [B, steps]."""

  @jax.jit
  def fn(params, acting, batch, context):
    wm = params['wm']
    b, length = batch['is_first'].shape
    post = nets.observe(wm, nets.encode(wm, batch['image']), batch['action'], batch['is_first'], None)
    rows = jnp.arange(b)
    start = {'deter': post['deter'][rows, context - 1], 'stoch': post['stoch'][rows, context - 1]}
    index = jnp.minimum(context[:, None] + jnp.arange(steps)[None], length - 1)  # [B, steps]
    actions = jnp.swapaxes(batch['action'][rows[:, None], index], 0, 1)  # [steps, B, A]
    head0 = jnp.zeros((b,), jnp.int32)

    def recorded(state, action):
      state, _ = nets.img_step(wm, state, action, None, head0)
      return state, rssm_lib.feature(state)

    def policy(state, _):
      action = nets.policy(acting['actor'], rssm_lib.feature(state)).mode()
      state, _ = nets.img_step(wm, state, action, None, head0)
      return state, rssm_lib.feature(state)

    _, feat = jax.lax.scan(recorded, start, actions)
    _, policy_feat = jax.lax.scan(policy, start, None, length=steps)
    feat, policy_feat = jnp.swapaxes(feat, 0, 1), jnp.swapaxes(policy_feat, 0, 1)  # [B, steps, F]
    return {
      'feat': feat,
      'reward': nets.predict_reward(wm, feat),
      'policy_reward': nets.predict_reward(wm, policy_feat),
    }

  return fn


def max_training_reward(config, workdir: str) -> float | None:
  """The largest per-step reward in the offline episodes a run trained on (its subset, if it used
  one), read without the images; None when the dataset is not on this machine."""
  directory = os.path.expanduser(config.data.dir) if config.data.dir else offline_data.cache_path(config)
  files = ep_lib.episode_files(directory)
  subset_file = os.path.join(workdir, offline_data.SUBSET_FILE)
  if files and os.path.exists(subset_file):
    with open(subset_file) as f:
      files = [os.path.join(directory, n) for n in json.load(f)['episodes']]
  best = None
  for path in files:
    with np.load(path) as f:
      best = max(best if best is not None else -np.inf, float(np.max(f['reward'])))
  return best


def composition_report(
  workdir: str,
  step: int | None = None,
  episodes: int = 4,
  observed_tasks: int = 3,
  max_length: int = 400,
  after: int = 20,
  offset: int = 7_000_000,
  log=print,
) -> dict:
  """Runs A.1 on the checkpoint `step` (default: the latest) of a Kitchen run; writes the GIF, the
  PNG and the JSON and returns the JSON's numbers (see the module docstring).

  The expert episodes run with a time limit of `max_length` steps (the scripted expert needs ~280 for
  all four on 'partial', the env's limit) and are cut `after` steps after the fourth target."""
  config, state, _, step, parts = restore.load_run(workdir, step)
  if config.domain != 'kitchen':
    raise ValueError(
      f'{workdir} is a {config.domain} run; the composition analysis reads target-task '
      f'flags, which Kitchen records (train on configs/kitchen.py:partial)'
    )
  suite = suites.get(config.domain)
  log(f'A.1: {episodes} scripted expert episodes of all four targets ({config.task})...')
  long = config.copy_and_resolve_references()
  long.unlock()
  long.env.episode_length = max(max_length, config.env.episode_length)
  eps = suite.held_out_episodes(long, episodes, offset)
  solved = [cut_after(e, after) for e in eps if bool(e['success'])]
  if not solved:
    raise ValueError(f'The scripted expert completed all four targets in none of {episodes} episodes')
  context = context_lengths([e['tasks_done'] for e in solved], observed_tasks)
  lengths = [len(e['image']) for e in solved]
  steps = max(n - c for n, c in zip(lengths, context))
  width = max(lengths)
  batch = {
    k: np.stack([np.concatenate([e[k], np.repeat(e[k][-1:], width - len(e[k]), 0)]) for e in solved])
    for k in ('image', 'action')
  }
  batch['is_first'] = np.zeros(batch['image'].shape[:2], bool)
  batch['is_first'][:, 0] = True
  out = jax.device_get(
    make_rollouts(parts.nets, steps)(state.params, agent.acting_params(state), batch, np.asarray(context, np.int32))
  )
  pred_image = np.asarray(jax.device_get(jax.jit(parts.nets.decode)(state.params['wm'], out['feat'])))
  pred_image = np.clip(pred_image + 0.5, 0.0, 1.0)

  # Per episode: its own predicted stretch (context .. end), padded by repeating the last frame.
  true_count, pred, policy, truth, frames = [], [], [], [], []
  for i, e in enumerate(solved):
    n = lengths[i] - context[i]
    count = np.asarray(e['tasks_done'], np.float32).sum(axis=1)[context[i] :]  # targets in goal
    true_count.append(count)
    pred.append(np.asarray(out['reward'][i, :n]))
    policy.append(np.asarray(out['policy_reward'][i, :n]))
    t = e['image'][context[i] :].astype(np.float32) / 255.0
    p = pred_image[i, :n]
    pad = steps - n
    truth.append(np.concatenate([t, np.repeat(t[-1:], pad, 0)]))
    frames.append(np.concatenate([p, np.repeat(p[-1:], pad, 0)]))
  all_four = np.concatenate([p[c >= 4] for p, c in zip(pred, true_count)])
  training_max = max_training_reward(config, workdir)
  result = dict(
    step=int(step),
    task=config.task,
    episodes=len(solved),
    episodes_tried=episodes,
    context=context,
    predicted_steps=[int(len(p)) for p in pred],
    max_training_reward=training_max,
    pred_reward_max=float(max(p.max() for p in pred)),
    pred_reward_mean_when_four_done=float(all_four.mean()) if len(all_four) else None,
    pred_reward_final=float(np.mean([p[-1] for p in pred])),
    true_count_final=float(np.mean([c[-1] for c in true_count])),
    policy_reward_final=float(np.mean([p[-1] for p in policy])),
    policy_reward_max=float(max(p.max() for p in policy)),
    image_mse=float(np.mean([np.mean((t - f) ** 2) for t, f in zip(truth, frames)])),
  )
  out_dir = os.path.join(workdir, 'composition')
  os.makedirs(out_dir, exist_ok=True)
  result['gif'] = evaluation.write_video(
    tile(np.stack(truth), np.stack(frames)), os.path.join(out_dir, f'composition_{step}.gif'), scale=2, fps=10
  )
  result['png'] = plot_composition(
    true_count, pred, policy, training_max, os.path.join(out_dir, f'composition_{step}.png')
  )
  with open(os.path.join(out_dir, f'composition_{step}.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return result


def plot_composition(true_count, pred, policy, training_max: float | None, path: str) -> str:
  """One panel per episode: the true count of targets in goal, the reward the model predicts along the
  recorded actions and along the policy's, against the predicted step; the dataset's maximum dashed."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(pred), figsize=(3.4 * len(pred), 3.0), squeeze=False)
  for i, ax in enumerate(axes[0]):
    ax.plot(true_count[i], label='targets in goal (true)')
    ax.plot(pred[i], label='predicted reward, recorded actions')
    ax.plot(policy[i], label='predicted reward, policy in the model')
    if training_max is not None:
      ax.axhline(training_max, color='gray', linestyle='--', linewidth=1, label='max reward in the data')
    ax.set_xlabel('steps after the third target')
    ax.set_title(f'episode {i}')
  axes[0][0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path
