"""Open-loop video prediction of a run's checkpoint (`launch.predict`): how well does the world
model imagine the future?

Conditions on the first `context` frames of held-out episodes, rolls the prior forward on the
recorded actions, and writes `<workdir>/openloop/openloop_<step>.gif` (rows: episodes; columns:
truth | prediction | error) and `rewards_<step>.png` (predicted vs true rewards).
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from moto_jax import suites
from moto_jax.agent.openloop import openloop_predict
from moto_jax.data import episodes as ep_lib
from moto_jax.training import evaluation, restore


def held_out_episodes(config, n: int, episodes_dir: str | None = None) -> list[dict]:
  """The last `n` episodes of `episodes_dir`, or the suite's `held_out_episodes` (fresh scripted ones)."""
  if episodes_dir:
    files = ep_lib.episode_files(episodes_dir)[-n:]
    if not files:
      raise FileNotFoundError(f'--episodes_dir={episodes_dir} holds no episode files')
    return [ep_lib.load_episode(f) for f in files]
  return suites.get(config.domain).held_out_episodes(config, n)


def tile(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
  """Frames [T', B*H, 3*W, 3] uint8 (rows: episodes; columns: truth | prediction | |error|) from
  float images [B, T', H, W, 3] in [0, 1]."""
  frames = np.concatenate([truth, pred, np.abs(truth - pred)], axis=3)  # [B, T', H, 3W, 3]
  frames = np.concatenate(list(frames), axis=1)  # [T', B*H, 3W, 3]
  return (np.clip(frames, 0, 1) * 255).astype(np.uint8)


def plot_rewards(true: np.ndarray, pred: np.ndarray, path: str) -> str:
  """One panel per episode: true and predicted rewards [B, T'] against the predicted step."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(true), figsize=(3.2 * len(true), 2.8), squeeze=False)
  for i, ax in enumerate(axes[0]):
    ax.plot(true[i], label='true')
    ax.plot(pred[i], label='predicted')
    ax.set_xlabel('predicted step')
    ax.set_title(f'episode {i}')
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def openloop_report(
  workdir: str,
  step: int | None = None,
  context: int = 5,
  horizon: int = 45,
  episodes: int = 4,
  start: int = 0,
  episodes_dir: str | None = None,
) -> dict:
  """Predicts `horizon` frames after `context` observed ones of `episodes` held-out episodes from
  step `start` with checkpoint `step` (default: the latest). Writes the GIF and the reward plot;
  returns {'step', 'episodes', 'context', 'predicted_steps', 'image_mse', 'reward_mae', 'gif', 'png'}."""
  config, state, _, step, parts = restore.load_run(workdir, step)
  eps = held_out_episodes(config, episodes, episodes_dir)
  length = min(len(e['image']) for e in eps) - start
  t = min(context + horizon, length)
  if t <= context:
    raise ValueError(f'Episodes have {length} steps after --start={start}; need more than --context={context}')
  batch = {k: np.stack([e[k][start : start + t] for e in eps]) for k in ('image', 'action', 'is_first', 'reward')}
  batch['is_first'][:, 0] = True
  predict = jax.jit(functools.partial(openloop_predict, context=context, nets=parts.nets))
  out = jax.device_get(predict(state.params, batch))
  truth = batch['image'][:, context:].astype(np.float32) / 255.0
  pred = np.asarray(out['pred_image'], np.float32)
  out_dir = os.path.join(workdir, 'openloop')
  gif = evaluation.write_video(tile(truth, pred), os.path.join(out_dir, f'openloop_{step}.gif'), scale=2, fps=10)
  png = plot_rewards(
    batch['reward'][:, context:], np.asarray(out['pred_reward']), os.path.join(out_dir, f'rewards_{step}.png')
  )
  return dict(
    step=step,
    episodes=len(eps),
    context=context,
    predicted_steps=t - context,
    image_mse=float(np.mean((truth - pred) ** 2)),
    reward_mae=float(np.mean(np.abs(batch['reward'][:, context:] - np.asarray(out['pred_reward'])))),
    gif=gif,
    png=png,
  )
