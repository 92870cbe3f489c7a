"""Other people's robot data as this library's episodes: LeRobot (v2.x) datasets and npz logs.

`python -m launch.convert --from=lerobot|npz --src=PATH --out=DIR` writes `episode_NNNNNN.npz`
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
"""

from __future__ import annotations

import dataclasses
import glob
import json
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


def finish(out_dir: str, source: dict, rules: Rules, low, high, summaries: list[dict], extra: dict) -> dict:
  """The manifest (with the action scale and the rules) and the contact sheet of a conversion."""
  settings = dict(domain='converted', source=source['kind'], image_key=rules.image_key, image_size=rules.image_size)
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


def _write(out_dir: str, index: int, episode: dict) -> dict:
  ep_lib.save_episode(os.path.join(out_dir, ep_lib.episode_name(index)), episode)
  return dict(
    reward=episode['reward'],
    success=episode['success'],
    bc_weight=episode['bc_weight'],
    length=len(episode['image']) - 1,
  )


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
  start, frames, summaries = time.time(), 0, []
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
    summaries.append(_write(out_dir, i, episode))
  seconds = time.time() - start
  extra = dict(source_files=len(files), frames_per_second=round(frames / max(seconds, 1e-9), 1))
  return finish(out_dir, dict(kind='npz', src=os.path.abspath(src)), rules, low, high, summaries, extra)


# --- LeRobot v2.x ---------------------------------------------------------------------------------
# meta/info.json names the layout: `data_path` and `video_path` templates over `episode_chunk`
# (= episode_index // chunks_size), `episode_index` and `video_key`; `features` gives each column's
# dtype ('video': an mp4 per episode and camera; 'image': PNG bytes inside the table).


def lerobot_info(src: str) -> dict:
  path = os.path.join(src, 'meta', 'info.json')
  if not os.path.exists(path):
    raise DatasetError(f'{src}: no meta/info.json (not a LeRobot dataset)')
  with open(path) as f:
    info = json.load(f)
  version = str(info.get('codebase_version', '?'))
  if not version.startswith('v2'):
    raise DatasetError(f'{path}: codebase_version {version!r}; this reader takes LeRobot v2.x datasets')
  for key in ('data_path', 'features', 'total_episodes', 'chunks_size', 'fps'):
    if key not in info:
      raise DatasetError(f'{path}: no field {key!r}')
  return info


def decode_video(path: str) -> np.ndarray:
  """Every frame of an mp4 as uint8 [T, H, W, 3] (PyAV)."""
  import av

  with av.open(path) as container:
    return np.stack([frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)])


def raw_decode_rate(path: str) -> float:
  """PyAV's own decode rate of a video file, frames per second (decode and RGB conversion alone)."""
  start = time.time()
  n = len(decode_video(path))
  return n / max(time.time() - start, 1e-9)


def _column(table, key: str, name: str, required: bool = True):
  if key in table.column_names:
    return table.column(key).to_pylist()
  if required:
    raise DatasetError(f'{name}: no column {key!r} (has {table.column_names})')
  return None


def read_lerobot_episode(src: str, info: dict, index: int, rules: Rules) -> tuple[dict, str]:
  """The source fields of episode `index`: images, action, reward, success and done flags."""
  import pyarrow.parquet as pq

  chunk = index // int(info['chunks_size'])
  path = os.path.join(src, info['data_path'].format(episode_chunk=chunk, episode_index=index))
  if not os.path.exists(path):
    raise DatasetError(f'episode {index}: {path} does not exist (meta/info.json data_path)')
  table = pq.read_table(path)
  name = f'{path} (episode {index})'
  feature = info['features'].get(rules.image_key)
  cameras = [k for k, v in info['features'].items() if v.get('dtype') in ('video', 'image')]
  if feature is None or feature.get('dtype') not in ('video', 'image'):
    raise DatasetError(f'image_key={rules.image_key!r} is not a camera of {src}; its cameras: {cameras}')
  if feature['dtype'] == 'video':
    video = os.path.join(
      src, info['video_path'].format(episode_chunk=chunk, video_key=rules.image_key, episode_index=index)
    )
    if not os.path.exists(video):
      raise DatasetError(f'episode {index}: {video} does not exist (meta/info.json video_path)')
    images = decode_video(video)
    rows = table.num_rows
    if len(images) < rows:
      raise DatasetError(f'{video}: {len(images)} frames for the {rows} rows of {path}')
    images = images[:rows]
  else:
    import io

    from PIL import Image

    cells = _column(table, rules.image_key, name)
    images = np.stack([np.asarray(Image.open(io.BytesIO(c['bytes'])).convert('RGB')) for c in cells])
  fields = dict(
    images=images,
    actions=np.asarray(_column(table, rules.action_key, name), np.float64),
    rewards=_column(table, rules.reward_key, name) if rules.reward_key else None,
    success=_column(table, rules.success_key, name, required=False) if rules.success_rule == 'key' else None,
    done=_column(table, rules.done_key, name) if rules.done_key else None,
  )
  return fields, name


def from_lerobot(src: str, out_dir: str, rules: Rules, progress: bool = True, log=print) -> dict:
  """Every episode of a LeRobot v2.x dataset at `src` (see `read_lerobot_episode`)."""
  import pyarrow.parquet as pq
  import tqdm

  info = lerobot_info(src)
  n = int(info['total_episodes'])
  actions = []
  for i in range(n):  # first pass: the action columns alone, for the bounds
    chunk = i // int(info['chunks_size'])
    path = os.path.join(src, info['data_path'].format(episode_chunk=chunk, episode_index=i))
    if not os.path.exists(path):
      raise DatasetError(f'episode {i}: {path} does not exist (meta/info.json data_path)')
    actions.append(np.asarray(_column(pq.read_table(path, columns=[rules.action_key]), rules.action_key, path)))
  low, high = action_bounds(actions, rules)
  os.makedirs(out_dir, exist_ok=True)
  video = info['features'].get(rules.image_key, {}).get('dtype') == 'video'
  raw_fps = None
  if video and n:
    raw_fps = raw_decode_rate(
      os.path.join(src, info['video_path'].format(episode_chunk=0, video_key=rules.image_key, episode_index=0))
    )
  start, frames, summaries = time.time(), 0, []
  bar = tqdm.tqdm(range(n), desc='lerobot', unit='ep', disable=not progress)
  for i in bar:
    f, name = read_lerobot_episode(src, info, i, rules)
    episode = make_episode(f['images'], f['actions'], f['rewards'], f['success'], f['done'], rules, low, high, name)
    frames += len(episode['image'])
    summaries.append(_write(out_dir, i, episode))
    bar.set_postfix(frames_per_s=f'{frames / max(time.time() - start, 1e-9):.0f}')
  fps = frames / max(time.time() - start, 1e-9)
  log(
    f'Converted {n} episodes, {frames} frames at {fps:.0f} frames/s'
    + (f" (PyAV alone decodes this dataset's first video at {raw_fps:.0f} frames/s)" if raw_fps else '')
  )
  extra = dict(
    lerobot_version=info['codebase_version'],
    fps=info['fps'],
    frames_per_second=round(fps, 1),
    raw_decode_frames_per_second=round(raw_fps, 1) if raw_fps else None,
  )
  return finish(out_dir, dict(kind='lerobot', src=os.path.abspath(src)), rules, low, high, summaries, extra)


def to_lerobot(
  episodes_dir: str, out: str, video: bool = True, fps: int = 10, camera: str = 'observation.images.cam'
) -> dict:
  """Writes this library's episodes as a LeRobot v2.1 dataset (the inverse of `from_lerobot`): a row
  per image with the action taken from it (`action[t + 1]`; zeros on the last row), `next.reward`
  (`reward[t + 1]`), `next.done` and `next.success` (the episode's success, on its last row); the
  camera as mp4 (H.264, lossy) or as PNG bytes in the table (lossless). Returns meta/info.json."""
  import av
  import pyarrow as pa
  import pyarrow.parquet as pq

  files = ep_lib.episode_files(episodes_dir)
  if not files:
    raise DatasetError(f'{episodes_dir}: no episode files')
  chunks_size, info_frames = 1000, 0
  data_path = 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet'
  video_path = 'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4'
  first = ep_lib.load_episode(files[0])
  h, w = first['image'].shape[1:3]
  adim = first['action'].shape[1]
  episodes_meta = []
  for i, path in enumerate(files):
    e = ep_lib.load_episode(path)
    n = len(e['image'])
    action = np.concatenate([e['action'][1:], np.zeros((1, adim), np.float32)])
    reward = np.concatenate([e['reward'][1:], [0.0]]).astype(np.float32)
    done = np.zeros(n, bool)
    done[-1] = bool(e['is_terminal'][-1])
    success = np.zeros(n, bool)
    success[-1] = bool(e['success'])
    columns = {
      'action': pa.array(list(action), type=pa.list_(pa.float32(), adim)),
      'next.reward': pa.array(reward),
      'next.done': pa.array(done),
      'next.success': pa.array(success),
      'timestamp': pa.array(np.arange(n, dtype=np.float32) / fps),
      'frame_index': pa.array(np.arange(n, dtype=np.int64)),
      'episode_index': pa.array(np.full(n, i, np.int64)),
      'index': pa.array(np.arange(info_frames, info_frames + n, dtype=np.int64)),
      'task_index': pa.array(np.zeros(n, np.int64)),
    }
    chunk = i // chunks_size
    if video:
      vpath = os.path.join(out, video_path.format(episode_chunk=chunk, video_key=camera, episode_index=i))
      os.makedirs(os.path.dirname(vpath), exist_ok=True)
      with av.open(vpath, 'w') as container:
        stream = container.add_stream('libx264', rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
        stream.options = {'crf': '0'}  # as little loss as H.264 in yuv420p allows
        for frame in e['image']:
          container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
        container.mux(stream.encode())
    else:
      import io

      from PIL import Image

      def png(frame):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format='PNG')
        return {'bytes': buffer.getvalue(), 'path': None}

      columns[camera] = pa.array(
        [png(f) for f in e['image']], type=pa.struct([('bytes', pa.binary()), ('path', pa.string())])
      )
    dpath = os.path.join(out, data_path.format(episode_chunk=chunk, episode_index=i))
    os.makedirs(os.path.dirname(dpath), exist_ok=True)
    pq.write_table(pa.table(columns), dpath)
    episodes_meta.append({'episode_index': i, 'tasks': ['task'], 'length': n})
    info_frames += n
  info = {
    'codebase_version': 'v2.1',
    'robot_type': 'unknown',
    'total_episodes': len(files),
    'total_frames': info_frames,
    'total_tasks': 1,
    'total_videos': len(files) if video else 0,
    'total_chunks': (len(files) - 1) // chunks_size + 1,
    'chunks_size': chunks_size,
    'fps': fps,
    'splits': {'train': f'0:{len(files)}'},
    'data_path': data_path,
    'video_path': video_path if video else None,
    'features': {
      camera: {'dtype': 'video' if video else 'image', 'shape': [h, w, 3], 'names': ['height', 'width', 'channels']},
      'action': {'dtype': 'float32', 'shape': [adim], 'names': None},
      'next.reward': {'dtype': 'float32', 'shape': [1], 'names': None},
      'next.done': {'dtype': 'bool', 'shape': [1], 'names': None},
      'next.success': {'dtype': 'bool', 'shape': [1], 'names': None},
      'timestamp': {'dtype': 'float32', 'shape': [1], 'names': None},
      'frame_index': {'dtype': 'int64', 'shape': [1], 'names': None},
      'episode_index': {'dtype': 'int64', 'shape': [1], 'names': None},
      'index': {'dtype': 'int64', 'shape': [1], 'names': None},
      'task_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    },
  }
  os.makedirs(os.path.join(out, 'meta'), exist_ok=True)
  with open(os.path.join(out, 'meta', 'info.json'), 'w') as f:
    json.dump(info, f, indent=2)
  with open(os.path.join(out, 'meta', 'episodes.jsonl'), 'w') as f:
    f.writelines(json.dumps(m) + '\n' for m in episodes_meta)
  with open(os.path.join(out, 'meta', 'tasks.jsonl'), 'w') as f:
    f.write(json.dumps({'task_index': 0, 'task': 'task'}) + '\n')
  return info


# --- Minari -------------------------------------------------------------------------------------


def from_minari(src: str, out_dir: str, rules: Rules, progress: bool = True) -> dict:
  """A Minari dataset (HDF5 or Arrow; read by the `minari` package): `src` is a dataset id in the
  local Minari root or a dataset's folder. Each episode has T + 1 observations (the image itself, or
  `observations[image_key]` of a Dict space), T actions and rewards, `terminations`, and success from
  `infos[success_key]` (recorded with `record_infos=True`). Action bounds default to the dataset's
  finite Box bounds, else the data's min and max."""
  import minari
  import tqdm

  path = os.path.join(src, 'data') if os.path.isdir(os.path.join(src, 'data')) else src
  try:
    dataset = minari.MinariDataset(path) if os.path.isdir(path) else minari.load_dataset(src)
  except Exception as e:  # noqa: BLE001 - minari raises several kinds
    raise DatasetError(f'{src}: not a readable Minari dataset ({type(e).__name__}: {e})') from e
  space = dataset.action_space
  if (
    rules.action_low is None
    and rules.action_high is None
    and np.isfinite(space.low).all()
    and np.isfinite(space.high).all()
  ):
    rules = dataclasses.replace(
      rules, action_low=tuple(map(float, space.low)), action_high=tuple(map(float, space.high))
    )
  if rules.action_low is None or rules.action_high is None:
    low, high = action_bounds([e.actions for e in dataset.iterate_episodes()], rules)
  else:
    low, high = np.asarray(rules.action_low, np.float64), np.asarray(rules.action_high, np.float64)
  os.makedirs(out_dir, exist_ok=True)
  start, frames, summaries = time.time(), 0, []
  for i, e in enumerate(
    tqdm.tqdm(dataset.iterate_episodes(), total=dataset.total_episodes, desc='minari', unit='ep', disable=not progress)
  ):
    name = f'{src} (episode {e.id})'
    images = e.observations
    if isinstance(images, dict):
      if rules.image_key not in images:
        raise DatasetError(f'{name}: no observation {rules.image_key!r} (has {sorted(images)})')
      images = images[rules.image_key]
    flags = e.infos.get(rules.success_key) if rules.success_rule == 'key' else None
    if rules.success_rule == 'key' and flags is None:
      raise DatasetError(
        f'{name}: no info {rules.success_key!r} (record it with record_infos=True, or use success_rule=reward|none)'
      )
    episode = make_episode(images, e.actions, e.rewards, flags, e.terminations, rules, low, high, name)
    frames += len(episode['image'])
    summaries.append(_write(out_dir, i, episode))
  extra = dict(minari_id=dataset.id, frames_per_second=round(frames / max(time.time() - start, 1e-9), 1))
  return finish(out_dir, dict(kind='minari', src=str(src)), rules, low, high, summaries, extra)
