r"""Open-loop video prediction: how well does the world model imagine the future?

  python -m launch.predict --workdir=runs/drawer-open [--context 5] [--horizon 45] [--episodes 4]

Conditions on the first `context` frames of held-out episodes, rolls the prior forward
on the recorded actions, and writes `<workdir>/openloop/openloop_<step>.gif` (rows:
episodes; columns: truth | prediction | error) and `rewards_<step>.png` (predicted vs
true rewards). Held-out episodes are fresh scripted MetaWorld episodes from seeds the
dataset never used, or the episodes of `--episodes_dir`.
"""
import os

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a run.', required=True)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint to restore (default: the latest).')
_CONTEXT = flags.DEFINE_integer('context', 5, 'Observed frames before the open-loop rollout.')
_HORIZON = flags.DEFINE_integer('horizon', 45, 'Predicted frames.')
_EPISODES = flags.DEFINE_integer('episodes', 4, 'Held-out episodes to predict.')
_START = flags.DEFINE_integer('start', 0, 'First step of the window within each episode.')
_EPISODES_DIR = flags.DEFINE_string('episodes_dir', None, 'Take episodes from this directory instead.')


def held_out_episodes(config, n):
  from moto_jax import suites
  from moto_jax.data import episodes as ep_lib
  if _EPISODES_DIR.value:
    files = ep_lib.episode_files(_EPISODES_DIR.value)[-n:]
    if not files:
      raise FileNotFoundError(f'--episodes_dir={_EPISODES_DIR.value} holds no episode files')
    return [ep_lib.load_episode(f) for f in files]
  return suites.get(config.domain).held_out_episodes(config, n)


def main(argv):
  del argv
  os.environ.setdefault('MUJOCO_GL', 'egl')
  logging.set_verbosity(logging.WARNING)
  import jax
  import numpy as np
  from moto_jax.agent import openloop_predict
  from moto_jax.training import evaluation, restore
  config, state, _, step, _ = restore.load_run(_WORKDIR.value, _STEP.value)
  context, horizon, start = _CONTEXT.value, _HORIZON.value, _START.value
  episodes = held_out_episodes(config, _EPISODES.value)
  length = min(len(e['image']) for e in episodes) - start
  t = min(context + horizon, length)
  if t <= context:
    raise ValueError(f'Episodes have {length} steps after --start={start}; need more than --context={context}')
  batch = {k: np.stack([e[k][start:start + t] for e in episodes]) for k in ('image', 'action', 'is_first', 'reward')}
  batch['is_first'][:, 0] = True
  predict = jax.jit(lambda p, b: openloop_predict(p, b, context, config))
  out = jax.device_get(predict(state.params, batch))
  truth = batch['image'][:, context:].astype(np.float32) / 255.0
  pred = np.asarray(out['pred_image'], np.float32)
  err = np.abs(truth - pred)
  mse = float(np.mean((truth - pred) ** 2))
  # One frame per predicted step: rows = episodes, columns = truth | prediction | error.
  frames = np.concatenate([truth, pred, err], axis=3)            # [B, T', 64, 192, 3]
  frames = np.concatenate(list(frames), axis=1)                   # [T', B*64, 192, 3]
  frames = (np.clip(frames, 0, 1) * 255).astype(np.uint8)
  out_dir = os.path.join(_WORKDIR.value, 'openloop')
  gif = evaluation.write_video(frames, os.path.join(out_dir, f'openloop_{step}.gif'), scale=2, fps=10)
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(episodes), figsize=(3.2 * len(episodes), 2.8), squeeze=False)
  for i, ax in enumerate(axes[0]):
    ax.plot(batch['reward'][i, context:], label='true')
    ax.plot(np.asarray(out['pred_reward'][i]), label='predicted')
    ax.set_xlabel('predicted step')
    ax.set_title(f'episode {i}')
  axes[0][0].legend()
  fig.tight_layout()
  png = os.path.join(out_dir, f'rewards_{step}.png')
  fig.savefig(png, dpi=90)
  plt.close(fig)
  reward_mae = float(np.mean(np.abs(batch['reward'][:, context:] - np.asarray(out['pred_reward']))))
  print(f'Checkpoint {step}: {len(episodes)} episodes, context {context}, {t - context} predicted steps: '
        f'image MSE {mse:.4f} (pixels in [0, 1]), reward MAE {reward_mae:.3f}')
  print(f'GIF: {gif}\nRewards: {png}')


if __name__ == '__main__':
  app.run(main)
