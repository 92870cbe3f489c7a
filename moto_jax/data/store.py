"""A NumPy episode store: offline episodes plus online ones, sampled as [B, T] windows.

Offline episodes are loaded from dataset directories; online episodes are added as
they finish and persisted immediately to the store's own directory (so a crash loses
none). Batches are windows of `seq_len` consecutive steps, never across an episode
boundary, with a share from the online part.

Window starts (`cover_edges=True`, the default): a raw start is drawn uniformly from
[-(T-1), L-1] for an episode of L steps and clamped into [0, L-T]. Every step is then
covered by at least T of the L+T-1 raw starts, and no step by more than 2T-1: the reset
step, where every evaluation begins, is trained on as often as a middle step. Drawing only
valid starts uniformly from [0, L-T] (`cover_edges=False`) covers step 0 by a single start,
T times less often than a middle step. Images stay uint8.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from moto_jax.data import episodes as ep_lib

PARTS = ('offline', 'online')


class EpisodeStore:
  """Holds episodes in memory and samples fixed-length sequences.

  Args:
    seq_len: T, the length of sampled windows (episodes shorter than T are kept on
      disk but never sampled; they are counted in `stats()`).
    online_dir: where online episodes are written; existing files are loaded as
      online episodes (a resumed run continues where it stopped).
    online_fraction: the most of each batch drawn from online episodes; the share is
      min(online_fraction, online steps / all stored steps), so the first online episodes
      do not fill half of every batch.
    cover_edges: clamp windows at the episode edges so every step has a comparable
      chance of being sampled (see the module docstring).
    skip_corrupt: skip unreadable files with a warning (counted) instead of raising.
    image_shape: if given, every episode's frames must have this shape [H, W, 3]; a file with
      another is refused at load, naming the file (or skipped with `skip_corrupt`).
    action_dim: if given, every episode's actions must have this dimension (same handling).
    online_limit: load only the first this many online files (a resumed run loads the episodes
      its checkpoint had seen and replays the later ones with `add(..., persist=False)`).
  """

  def __init__(self, seq_len: int, online_dir: str | None = None, online_fraction: float = 0.5,
               skip_corrupt: bool = False, cover_edges: bool = True,
               image_shape: tuple[int, int, int] | None = None, online_limit: int | None = None,
               action_dim: int | None = None, step_weights=None):
    self.image_shape = tuple(image_shape) if image_shape is not None else None
    self.action_dim = action_dim
    self.step_weights = step_weights
    if not 0.0 <= online_fraction <= 1.0:
      raise ValueError(f'online_fraction={online_fraction}; expected a value in [0, 1]')
    self.seq_len = int(seq_len)
    self.online_dir = online_dir
    self.online_fraction = float(online_fraction)
    self.skip_corrupt = skip_corrupt
    self.cover_edges = bool(cover_edges)
    self._episodes = {p: [] for p in PARTS}
    self._windows = {p: [] for p in PARTS}   # raw window starts per episode (0: too short)
    self._steps = {p: 0 for p in PARTS}      # stored steps per part (kept on insert; read per batch)
    self.skipped_files: list[str] = []
    self.too_short = 0
    if online_dir:
      os.makedirs(online_dir, exist_ok=True)
      self.load_directory(online_dir, part='online', limit=online_limit)

  # --- filling -------------------------------------------------------------

  def load_directory(self, directory: str, part: str = 'offline', limit: int | None = None,
                     names: list[str] | None = None) -> int:
    """Loads the episode files of `directory` (the first `limit`, default all; or only the file
    `names` given, in their order) into `part`; returns how many were loaded."""
    files = ep_lib.episode_files(directory)[:limit]
    if names is not None:
      missing = [n for n in names if not os.path.exists(os.path.join(directory, n))]
      if missing:
        raise FileNotFoundError(f'{directory}: episode file(s) {", ".join(missing[:5])} of the run\'s offline '
                                f'subset are missing')
      files = [os.path.join(directory, n) for n in names]
    loaded = 0
    for path in files:
      try:
        episode = self._check_shape(ep_lib.load_episode(path), path)
      except ep_lib.CorruptEpisodeError as e:
        if not self.skip_corrupt:
          if part != 'offline':              # a run's own episodes: skipping them would break its resume
            raise
          raise ep_lib.CorruptEpisodeError(f'{e} [--config.data.skip_corrupt=True skips such files and counts '
                                           f'them]') from e
        logging.warning('Skipping corrupt episode: %s', e)
        self.skipped_files.append(path)
        continue
      self._insert(episode, part)
      loaded += 1
    return loaded

  def add(self, episode: dict, part: str = 'online', persist: bool = True) -> str | None:
    """Adds a finished episode; online episodes are written to `online_dir` first (unless
    `persist=False`: an episode read back from there)."""
    try:
      episode = self._check_shape(ep_lib.validate(episode), 'episode')
    except ep_lib.CorruptEpisodeError as e:  # an episode this program made: a bug, with its traceback
      raise RuntimeError(f'an episode collected by this run is invalid: {e}') from e
    path = None
    if part == 'online' and self.online_dir and persist:
      path = os.path.join(self.online_dir, ep_lib.episode_name(len(self._episodes['online'])))
      if os.path.exists(path):
        raise FileExistsError(f'{path} exists: the online directory has files this store did not load')
      ep_lib.save_episode(path, episode)
    self._insert(episode, part)
    return path

  def _check_shape(self, episode: dict, name: str) -> dict:
    shape = tuple(episode['image'].shape[1:])
    if self.image_shape is not None and shape != self.image_shape:
      raise ep_lib.CorruptEpisodeError(f'{name}: frames of shape {shape}; this run expects {self.image_shape} '
                                       f'(config.env.image_size)')
    dim = episode['action'].shape[1]
    if self.action_dim is not None and dim != self.action_dim:
      raise ep_lib.CorruptEpisodeError(f'{name}: actions of dimension {dim}; this run\'s environment has '
                                       f'{self.action_dim}')
    return episode

  def _insert(self, episode: dict, part: str):
    if part not in PARTS:
      raise ValueError(f'part={part!r}; expected one of {PARTS}')
    episode = {k: v for k, v in episode.items()}
    if self.step_weights is not None:
      weights = np.asarray(self.step_weights(episode), np.float32)
      if weights.shape != (len(episode['image']),):
        raise ValueError(f'step_weights gave shape {weights.shape}; expected ({len(episode["image"])},)')
      episode['bc_steps'] = weights
    self._episodes[part].append(episode)
    self._steps[part] += ep_lib.num_steps(episode)
    length = len(episode['image'])
    if length < self.seq_len:
      self.too_short += 1
      n = 0
    else:
      n = length + self.seq_len - 1 if self.cover_edges else length - self.seq_len + 1
    self._windows[part].append(n)

  # --- reading -------------------------------------------------------------

  def num_episodes(self, part: str | None = None) -> int:
    return sum(len(self._episodes[p]) for p in (PARTS if part is None else (part,)))

  def num_steps(self, part: str | None = None) -> int:
    return sum(self._steps[p] for p in (PARTS if part is None else (part,)))

  def episodes(self, part: str) -> list[dict]:
    return list(self._episodes[part])

  def num_windows(self, part: str) -> int:
    return int(sum(self._windows[part]))

  def bytes_per_frame(self) -> float:
    """Memory held per stored step (image, action and the rest)."""
    total = frames = 0
    for p in PARTS:
      for e in self._episodes[p]:
        total += sum(v.nbytes for v in e.values())
        frames += len(e['image'])
    return total / max(frames, 1)

  def stats(self) -> dict:
    return dict(offline_episodes=self.num_episodes('offline'), online_episodes=self.num_episodes('online'),
                offline_steps=self.num_steps('offline'), online_steps=self.num_steps('online'),
                bytes_per_frame=self.bytes_per_frame(), skipped_corrupt=len(self.skipped_files),
                too_short=self.too_short)

  def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Returns a batch of `batch_size` windows, arrays [B, T, ...], plus `bc_weight` [B, T]."""
    counts = self._split(batch_size)
    parts = [self._sample_part(p, n, rng) for p, n in zip(PARTS, counts) if n]
    keys = set.intersection(*(set(b) for b in parts))   # e.g. Kitchen's target progress exists online only
    return {k: np.concatenate([b[k] for b in parts]) for k in sorted(keys)}

  def _split(self, batch_size: int) -> tuple[int, int]:
    has = [self.num_windows(p) > 0 for p in PARTS]
    if not any(has):
      raise ValueError(f'The store has no episode of at least seq_len={self.seq_len} steps '
                       f'({self.num_episodes()} episodes, {self.too_short} too short)')
    if not has[1]:
      return batch_size, 0
    if not has[0]:
      return 0, batch_size
    share = min(self.online_fraction, self.num_steps('online') / max(self.num_steps(), 1))
    n_online = int(round(share * batch_size))
    return batch_size - n_online, n_online

  def _start(self, length: int, rng: np.random.Generator) -> int:
    """A window start in [0, length - T] (see the module docstring)."""
    t = self.seq_len
    if not self.cover_edges:
      return int(rng.integers(length - t + 1))
    return int(np.clip(rng.integers(-(t - 1), length), 0, length - t))

  def step_coverage(self, length: int) -> np.ndarray:
    """Probability [length] that a window drawn from an episode of `length` steps holds each step."""
    t = self.seq_len
    if self.cover_edges:
      raw = np.arange(-(t - 1), length)
      starts = np.clip(raw, 0, length - t)
    else:
      starts = np.arange(length - t + 1)
    cover = np.zeros(length)
    for s in starts:
      cover[s:s + t] += 1
    return cover / len(starts)

  def _sample_part(self, part: str, n: int, rng: np.random.Generator) -> dict:
    windows = np.asarray(self._windows[part], np.float64)
    ep_idx = rng.choice(len(windows), size=n, p=windows / windows.sum())
    eps = self._episodes[part]
    starts = [self._start(len(eps[i]['image']), rng) for i in ep_idx]
    keys = set.intersection(*({k for k, v in eps[i].items()
                               if k not in ep_lib.EPISODE_KEYS and k != 'bc_steps' and v.ndim >= 1}
                              for i in set(ep_idx.tolist())))
    batch = {k: np.stack([eps[i][k][s:s + self.seq_len] for i, s in zip(ep_idx, starts)]) for k in keys}
    batch['bc_weight'] = np.stack(
        [ep_lib.step_weights(eps[i])[s:s + self.seq_len] for i, s in zip(ep_idx, starts)]).astype(np.float32)
    return batch
