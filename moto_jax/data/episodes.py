"""Episode files: one compressed `.npz` per episode, Dreamer convention.

Step `i` holds `image_i`, the `action_i` that led to it and its `reward_i`; step 0
is the reset, with a zero action and zero reward. Keys (T = agent steps):

  image        uint8   [T+1, S, S, 3]
  action       float32 [T+1, A]
  reward       float32 [T+1]
  discount     float32 [T+1]    0 after a true terminal, else 1
  is_first     bool    [T+1]
  is_terminal  bool    [T+1]
  success      bool    []       the episode succeeded at any step
  bc_weight    float32 []       weight of the episode in the behaviour prior (Eq. 10)

Domains may add per-step keys (e.g. Kitchen's per-task completion flags). In memory, an
episode store may add `bc_steps` float32 [T+1]: a per-step behaviour-prior weight (Kitchen's
segment cloning) that takes the place of `bc_weight` on each step; it is never written. Files are
written atomically (temp file + rename), so a crash never leaves a half file under
an episode's name.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from moto_jax.errors import UserError

STEP_KEYS = ('image', 'action', 'reward', 'discount', 'is_first', 'is_terminal')
EPISODE_KEYS = ('success', 'bc_weight')
DTYPES = dict(image=np.uint8, action=np.float32, reward=np.float32, discount=np.float32,
              is_first=bool, is_terminal=bool)


ACTION_TOLERANCE = 1e-5   # float round-off allowed outside [-1, 1]


class CorruptEpisodeError(ValueError, UserError):
  """An episode file that cannot be read or does not follow the episode format."""


def validate(episode: dict, name: str = 'episode') -> dict:
  """Checks keys, dtypes and lengths; returns the episode with canonical dtypes."""
  missing = [k for k in STEP_KEYS + EPISODE_KEYS if k not in episode]
  if missing:
    raise CorruptEpisodeError(f'{name}: missing keys {missing}')
  out = dict(episode)
  image_dtype = np.asarray(episode['image']).dtype
  if image_dtype != np.uint8:
    raise CorruptEpisodeError(f'{name}: images are {image_dtype}; expected uint8 in [0, 255] '
                              f'(float images in [0, 1] would turn black if cast)')
  length = len(episode['image'])
  if length < 2:
    raise CorruptEpisodeError(f'{name}: {length} steps; an episode needs a reset step and at least one more')
  for key, value in episode.items():
    value = np.asarray(value)
    if key in DTYPES:
      value = value.astype(DTYPES[key], copy=False)
    if key in EPISODE_KEYS:
      if value.ndim != 0:
        raise CorruptEpisodeError(f'{name}: per-episode key {key!r} has shape {value.shape}')
    elif value.ndim == 0 or len(value) != length:
      raise CorruptEpisodeError(f'{name}: key {key!r} has shape {value.shape}; expected {length} steps')
    out[key] = value
  if out['image'].ndim != 4 or out['image'].shape[-1] != 3:
    raise CorruptEpisodeError(f'{name}: image shape {out["image"].shape}; expected [T+1, S, S, 3]')
  if not out['is_first'][0] or out['is_first'][1:].any():
    raise CorruptEpisodeError(f'{name}: is_first must be True at step 0 only')
  action = out['action']
  if action.ndim != 2:
    raise CorruptEpisodeError(f'{name}: key \'action\' has shape {action.shape}; expected [T+1, action_dim]')
  bad = ~np.isfinite(action) | (np.abs(action) > 1.0 + ACTION_TOLERANCE)
  if bad.any():
    step, dim = np.argwhere(bad)[0]
    raise CorruptEpisodeError(f'{name}: key \'action\' is {float(action[step, dim])} at step {step}, dimension {dim}; '
                              f'actions must be finite and in [-1, 1] (rescale the recorded actions)')
  for key in ('reward', 'discount'):
    bad = ~np.isfinite(out[key])
    if bad.any():
      step = int(np.argmax(bad))
      raise CorruptEpisodeError(f'{name}: key {key!r} is {float(out[key][step])} at step {step}; expected finite values')
  return out


def step_weights(episode: dict) -> np.ndarray:
  """The behaviour-prior weight of each step [T+1]: `bc_steps` where the store set it, else the
  episode's `bc_weight` on every step. Step i's weight applies to the pair (z_i, a_{i+1})."""
  if 'bc_steps' in episode:
    return np.asarray(episode['bc_steps'], np.float32)
  return np.full(len(episode['image']), float(episode['bc_weight']), np.float32)


def carries_prior(episode: dict) -> bool:
  """Whether any step of the episode carries the behaviour prior."""
  return bool(np.any(step_weights(episode) > 0))


def num_steps(episode: dict) -> int:
  """Agent steps (transitions) in an episode: its length minus the reset step."""
  return len(episode['image']) - 1


def save_episode(path: str, episode: dict) -> str:
  """Writes `episode` to `path` atomically and durably; returns the path."""
  episode = validate(episode, path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **episode)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(buffer.getvalue())
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path


def load_episode(path: str) -> dict:
  """Reads an episode file; raises `CorruptEpisodeError` naming the file if it is unreadable."""
  try:
    with np.load(path, allow_pickle=False) as data:
      episode = {k: data[k] for k in data.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
    raise CorruptEpisodeError(f'{path}: unreadable episode file ({type(e).__name__}: {e})') from e
  return validate(episode, path)


def episode_files(directory: str) -> list[str]:
  """Episode files of a directory in name order (temp files of interrupted writes are ignored)."""
  if not os.path.isdir(directory):
    return []
  return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith('.npz'))


def episode_name(index: int) -> str:
  return f'episode_{index:06d}.npz'
