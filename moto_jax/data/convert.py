"""Other people's robot data as this library's episodes: LeRobot (v2.x, v3.0), Minari, npz logs.

`python -m launch.convert --from=lerobot|minari|npz --src=PATH --out=DIR` writes `episode_NNNNNN.npz`
files (the Dreamer layout of `moto_jax.data.episodes`), a `manifest.json` and a contact sheet:

* images: the chosen camera (`image_key`), resized to `image_size` (bilinear);
* actions: mapped to [-1, 1] per dimension from [low, high] (given, or the data's min and max), the
  scale recorded in the manifest (`action_scale`) so that a policy can act in the robot's units;
* alignment: a source row holds (observation_t, action_t, reward_t) as gym and LeRobot log them; the
  episode stores image t with the action that led to it (`action[0] = 0`, `action[t] = a_{t-1}`) and
  the reward that came with it (`reward[0] = 0`), so the last row's action and reward are dropped;
* success (and `bc_weight`, the behaviour prior of Eq. 10): `success_rule='key'` (any step's
  `success_key` flag is true), `'reward'` (any reward > 0), or `'none'` (no episode succeeds).

Every episode is checked (`episodes.validate`); an error names the source episode and the field.
This module holds the rules, the episode builder, the writer and the npz reader; `data/lerobot.py`
and `data/minari_io.py` read and write those formats.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time

import numpy as np

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.errors import DatasetError

SUCCESS_RULES = ('key', 'reward', 'none')


@dataclasses.dataclass
class Rules:
  """Which source fields make an episode, and how (see the module docstring)."""

  image_key: str = 'image'
  action_key: str = 'action'
  reward_key: str = 'reward'  # '' = rewards are 0
  success_key: str = 'success'  # with success_rule='key'
  success_rule: str = 'key'
  done_key: str = ''  # a per-step flag whose last value marks termination ('' = time limit)
  image_size: int = 64
  action_low: tuple | None = None  # None: the data's per-dimension minimum
  action_high: tuple | None = None  # None: the data's per-dimension maximum

  def __post_init__(self):
    if self.success_rule not in SUCCESS_RULES:
      raise DatasetError(f'success_rule={self.success_rule!r}; expected one of {SUCCESS_RULES}')


def resize(images: np.ndarray, size: int, name: str) -> np.ndarray:
  """uint8 [T, H, W, 3] (or [T, H, W, 4], alpha dropped) resized to [T, size, size, 3]."""
  from PIL import Image

  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (3, 4):
    raise DatasetError(f'{name}: images of shape {images.shape}; expected [T, H, W, 3] (channels last)')
  if images.dtype != np.uint8:
    if np.issubdtype(images.dtype, np.floating) and images.min() >= 0.0 and images.max() <= 1.0:
      images = np.round(images * 255.0).astype(np.uint8)  # [0, 1] floats
    else:
      raise DatasetError(f'{name}: images of dtype {images.dtype}; expected uint8 or floats in [0, 1]')
  images = images[..., :3]
  if images.shape[1:3] == (size, size):
    return np.ascontiguousarray(images)
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in images])


def action_bounds(actions: list[np.ndarray], rules: Rules) -> tuple[np.ndarray, np.ndarray]:
  """[low, high] per action dimension: the rules' values, or the data's min and max."""
  every = np.concatenate([np.asarray(a, np.float64).reshape(len(a), -1) for a in actions])
  low = np.asarray(rules.action_low, np.float64) if rules.action_low is not None else every.min(0)
  high = np.asarray(rules.action_high, np.float64) if rules.action_high is not None else every.max(0)
  if low.shape != (every.shape[1],) or high.shape != (every.shape[1],):
    raise DatasetError(f'action bounds of {low.size} / {high.size} values for actions of dimension {every.shape[1]}')
  return low, high


def scale_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray, name: str) -> np.ndarray:
  """Maps [low, high] to [-1, 1] per dimension (a constant dimension maps to 0)."""
  a = np.asarray(actions, np.float64).reshape(len(actions), -1)
  outside = (a < low - 1e-6) | (a > high + 1e-6)
  if outside.any():
    t, d = np.argwhere(outside)[0]
    raise DatasetError(
      f'{name}: field action, step {t}, dimension {d}: {a[t, d]:.6g} is outside [{low[d]:.6g}, {high[d]:.6g}] '
      '(the action bounds given)'
    )
  if np.all(low == -1.0) and np.all(high == 1.0):
    return a.astype(np.float32)  # already in [-1, 1]: unchanged, so a round trip is exact
  span = np.where(high > low, high - low, 1.0)
  return np.clip(np.where(high > low, 2.0 * (a - low) / span - 1.0, 0.0), -1.0, 1.0).astype(np.float32)


def make_episode(images, actions, rewards, success_flags, done_flags, rules: Rules, low, high, name: str) -> dict:
  """One episode in this library's layout (see the module docstring) from T rows of (image, action,
  reward), as gym and LeRobot log them, or from T + 1 images with T actions and rewards (the final
  observation included, as Minari stores it; nothing is dropped then)."""
  images = resize(images, rules.image_size, name)
  n = len(images)
  actions = np.asarray(actions)
  if len(actions) not in (n, n - 1):
    raise DatasetError(f'{name}: field {rules.action_key}: {len(actions)} rows for {n} images')
  if n < 2:
    raise DatasetError(f'{name}: {n} step(s); an episode needs at least 2')
  scaled = scale_actions(actions, low, high, name)
  rewards = np.zeros(len(actions), np.float32) if rewards is None else np.asarray(rewards, np.float32).reshape(-1)
  if len(rewards) != len(actions):
    raise DatasetError(f'{name}: field {rules.reward_key}: {len(rewards)} rows for {len(actions)} actions')
  if len(actions) == n:  # row t: (image t, the action taken from it, the reward after it)
    scaled, rewards = scaled[:-1], rewards[:-1]
  if rules.success_rule == 'key':
    if success_flags is None:
      raise DatasetError(
        f'{name}: no field {rules.success_key!r} for success_rule=key (or use success_rule=reward|none)'
      )
    success = bool(np.any(np.asarray(success_flags)))
  elif rules.success_rule == 'reward':
    success = bool(np.any(np.asarray(rewards) > 0))
  else:
    success = False
  terminal = bool(np.asarray(done_flags).reshape(-1)[-1]) if done_flags is not None else False
  is_terminal = np.zeros(n, bool)
  is_terminal[-1] = terminal
  episode = dict(
    image=images,
    action=np.concatenate([np.zeros((1, scaled.shape[1]), np.float32), scaled]),
    reward=np.concatenate([[0.0], rewards]).astype(np.float32),
    discount=(1.0 - is_terminal).astype(np.float32),
    is_first=np.arange(n) == 0,
    is_terminal=is_terminal,
    success=np.array(success),
    bc_weight=np.float32(success),
  )
  try:
    return ep_lib.validate(episode, name)
  except ep_lib.CorruptEpisodeError as e:
    raise DatasetError(str(e)) from e


def finish(
  out_dir: str, source: dict, rules: Rules, low, high, summaries: list[dict], extra: dict, settings: dict | None = None
) -> dict:
  """The manifest (with the action scale and the rules) and the contact sheet of a conversion.
  `settings`: the environment settings the data were recorded with, where the source carries them
  (a dataset this library exported); otherwise the conversion's own."""
  settings = settings or dict(
    domain='converted', source=source['kind'], image_key=rules.image_key, image_size=rules.image_size
  )
  light = [
    dict(
      reward=s['reward'], image=np.zeros((s['length'] + 1, 0), np.uint8), success=s['success'], bc_weight=s['bc_weight']
    )
    for s in summaries
  ]
  extra = dict(
    extra,
    action_scale=dict(low=[float(x) for x in low], high=[float(x) for x in high]),
    rules=dataclasses.asdict(rules),
  )
  manifest = manifest_lib.write_manifest(out_dir, settings, source, light, extra)
  files = ep_lib.episode_files(out_dir)[:8]
  manifest_lib.contact_sheet([ep_lib.load_episode(f) for f in files], os.path.join(out_dir, 'contact_sheet.png'))
  return manifest


class Writer:
  """Saves converted episodes on worker threads (compression releases the GIL, so it overlaps the
  decoding of the next episode); `summaries()` waits for them, in episode order."""

  def __init__(self, out_dir: str, threads: int = 2):
    from concurrent.futures import ThreadPoolExecutor

    self.out_dir, self._pool, self._futures = out_dir, ThreadPoolExecutor(threads), []

  def add(self, index: int, episode: dict) -> None:
    if len(self._futures) > 8:  # bound the episodes held in memory
      self._futures[-9].result()
    self._futures.append(self._pool.submit(self._save, index, episode))

  def _save(self, index: int, episode: dict) -> dict:
    ep_lib.save_episode(os.path.join(self.out_dir, ep_lib.episode_name(index)), episode)
    n = len(episode['image']) - 1
    return dict(reward=episode['reward'], success=episode['success'], bc_weight=episode['bc_weight'], length=n)

  def summaries(self) -> list[dict]:
    try:
      return [f.result() for f in self._futures]
    finally:
      self._pool.shutdown()


# --- npz logs ---------------------------------------------------------------------------------------


def from_npz(src: str, out_dir: str, rules: Rules, progress: bool = True) -> dict:
  """Each `*.npz` under `src` (sorted) is one episode with per-step arrays named by `rules`."""
  import tqdm

  files = sorted(glob.glob(os.path.join(src, '**', '*.npz'), recursive=True))
  if not files:
    raise DatasetError(f'{src}: no .npz files')

  def fields(path):
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is named
      raise DatasetError(f'{path}: not a readable npz file ({type(e).__name__}: {e})') from e

  def need(data, key, path):
    if key not in data:
      raise DatasetError(f'{path}: no field {key!r} (has {sorted(data)})')
    return data[key]

  actions = [need(fields(p), rules.action_key, p) for p in files]
  low, high = action_bounds(actions, rules)
  os.makedirs(out_dir, exist_ok=True)
  start, frames, writer = time.time(), 0, Writer(out_dir)
  for i, path in enumerate(tqdm.tqdm(files, desc='npz', unit='ep', disable=not progress)):
    data = fields(path)
    episode = make_episode(
      need(data, rules.image_key, path),
      data[rules.action_key],
      need(data, rules.reward_key, path) if rules.reward_key else None,
      data.get(rules.success_key) if rules.success_rule == 'key' else None,
      need(data, rules.done_key, path) if rules.done_key else None,
      rules,
      low,
      high,
      path,
    )
    frames += len(episode['image'])
    writer.add(i, episode)
  summaries = writer.summaries()  # (the rate counts the writes)
  seconds = time.time() - start
  extra = dict(source_files=len(files), frames_per_second=round(frames / max(seconds, 1e-9), 1))
  return finish(out_dir, dict(kind='npz', src=os.path.abspath(src)), rules, low, high, summaries, extra)
