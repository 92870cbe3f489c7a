"""LeRobot datasets (v2.x and v3.0) read as this library's episodes, and episodes exported as LeRobot
datasets (`convert.py` holds the shared rules and the episode builder).

meta/info.json names the layout and `features` each column's dtype ('video': mp4 files; 'image': PNG
bytes inside the table). v2.x: a table per episode (`data_path` over `episode_chunk` =
episode_index // chunks_size and `episode_index`) and an mp4 per episode and camera (`video_path`
with `video_key`). v3.0: tables and mp4s hold many episodes (`data_path`, `video_path` over
`chunk_index` and `file_index`); meta/episodes/*/*.parquet says, per episode, which files and, for
videos, from which timestamp.
"""

from __future__ import annotations

import glob
import json
import os
import time

import numpy as np

from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest as manifest_lib
from moto_jax.data.convert import Rules, Writer, action_bounds, finish, make_episode
from moto_jax.errors import DatasetError

V2_DATA = 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet'
V2_VIDEO = 'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4'
V3_DATA = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
V3_VIDEO = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'


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


class LeRobotSource:
  """Reads a LeRobot v2.x or v3.0 dataset's episodes: `table(i)`, `images(i, key, rows)`."""

  def __init__(self, src: str):
    import pyarrow.parquet as pq

    self.src = src
    path = os.path.join(src, 'meta', 'info.json')
    if not os.path.exists(path):
      raise DatasetError(f'{src}: no meta/info.json (not a LeRobot dataset)')
    with open(path) as f:
      self.info = info = json.load(f)
    self.version = str(info.get('codebase_version', '?'))
    if not self.version.startswith(('v2', 'v3')):
      raise DatasetError(f'{path}: codebase_version {self.version!r}; this reader takes LeRobot v2.x and v3.0')
    for key in ('data_path', 'features', 'total_episodes', 'fps'):
      if key not in info:
        raise DatasetError(f'{path}: no field {key!r}')
    self.v3 = self.version.startswith('v3')
    self._cache = {}
    if self.v3:
      files = sorted(glob.glob(os.path.join(src, 'meta', 'episodes', '*', '*.parquet')))
      if not files:
        raise DatasetError(f'{src}: no meta/episodes/*/*.parquet (LeRobot v3.0 episode metadata)')
      rows = [r for f in files for r in pq.read_table(f).to_pylist()]
      self.episodes = sorted(rows, key=lambda r: r['episode_index'])
    else:
      self.episodes = [{'episode_index': i} for i in range(int(info['total_episodes']))]

  def cameras(self) -> list[str]:
    return [k for k, v in self.info['features'].items() if v.get('dtype') in ('video', 'image')]

  def _cached(self, path: str, load):
    if path not in self._cache:
      self._cache.clear()  # one file at a time: episodes are read in file order
      self._cache[path] = load(path)
    return self._cache[path]

  def table(self, n: int, columns=None):
    """(the rows of the n-th episode, their file, a name for errors)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    e = self.episodes[n]
    i = int(e['episode_index'])
    if self.v3:
      rel = self.info['data_path'].format(chunk_index=int(e['data/chunk_index']), file_index=int(e['data/file_index']))
    else:
      rel = self.info['data_path'].format(episode_chunk=i // int(self.info.get('chunks_size', 1000)), episode_index=i)
    path = os.path.join(self.src, rel)
    if not os.path.exists(path):
      raise DatasetError(f'episode {i}: {path} does not exist (meta/info.json data_path)')
    if self.v3:
      table = self._cached(path, pq.read_table)
      table = table.filter(pc.equal(table['episode_index'], i))
      table = table.select(columns) if columns else table
    else:
      table = pq.read_table(path, columns=columns)
    return table, path, f'{path} (episode {i})'

  def video_path(self, n: int, key: str) -> str:
    e = self.episodes[n]
    i = int(e['episode_index'])
    if self.v3:
      rel = self.info['video_path'].format(
        video_key=key, chunk_index=int(e[f'videos/{key}/chunk_index']), file_index=int(e[f'videos/{key}/file_index'])
      )
    else:
      rel = self.info['video_path'].format(
        episode_chunk=i // int(self.info.get('chunks_size', 1000)), video_key=key, episode_index=i
      )
    return os.path.join(self.src, rel)

  def images(self, n: int, key: str, table, name: str) -> np.ndarray:
    feature = self.info['features'].get(key)
    if feature is None or feature.get('dtype') not in ('video', 'image'):
      raise DatasetError(f'image_key={key!r} is not a camera of {self.src}; its cameras: {self.cameras()}')
    rows = table.num_rows
    if feature['dtype'] == 'image':
      import io

      from PIL import Image

      cells = _column(table, key, name)
      return np.stack([np.asarray(Image.open(io.BytesIO(c['bytes'])).convert('RGB')) for c in cells])
    path = self.video_path(n, key)
    if not os.path.exists(path):
      raise DatasetError(f'{name}: {path} does not exist (meta/info.json video_path)')
    frames = self._cached(path, decode_video) if self.v3 else decode_video(path)
    start = 0
    if self.v3:
      fps = float(feature.get('info', {}).get('video.fps', self.info['fps']))
      start = int(round(float(self.episodes[n][f'videos/{key}/from_timestamp']) * fps))
    if len(frames) < start + rows:
      raise DatasetError(f'{path}: {len(frames) - start} frames from frame {start} for the {rows} rows of {name}')
    return frames[start : start + rows]


def from_lerobot(src: str, out_dir: str, rules: Rules, progress: bool = True, log=print) -> dict:
  """Every episode of a LeRobot v2.x or v3.0 dataset at `src` (see `LeRobotSource`)."""
  import tqdm

  source = LeRobotSource(src)
  n = len(source.episodes)
  actions = []
  for i in range(n):  # first pass: the action columns alone, for the bounds
    table, path, name = source.table(i, columns=[rules.action_key])
    actions.append(np.asarray(_column(table, rules.action_key, name)))
  low, high = action_bounds(actions, rules)
  os.makedirs(out_dir, exist_ok=True)
  video = source.info['features'].get(rules.image_key, {}).get('dtype') == 'video'
  raw_fps = raw_decode_rate(source.video_path(0, rules.image_key)) if video and n else None
  start, frames, writer = time.time(), 0, Writer(out_dir)
  bar = tqdm.tqdm(range(n), desc='lerobot', unit='ep', disable=not progress)
  for i in bar:
    table, _, name = source.table(i)
    episode = make_episode(
      source.images(i, rules.image_key, table, name),
      np.asarray(_column(table, rules.action_key, name), np.float64),
      _column(table, rules.reward_key, name) if rules.reward_key else None,
      _column(table, rules.success_key, name, required=False) if rules.success_rule == 'key' else None,
      _column(table, rules.done_key, name) if rules.done_key else None,
      rules,
      low,
      high,
      name,
    )
    frames += len(episode['image'])
    writer.add(i, episode)
    bar.set_postfix(frames_per_s=f'{frames / max(time.time() - start, 1e-9):.0f}')
  summaries = writer.summaries()  # (the rate counts the writes)
  fps = frames / max(time.time() - start, 1e-9)
  log(
    f'Converted {n} episodes, {frames} frames at {fps:.0f} frames/s'
    + (f" (PyAV alone decodes this dataset's first video at {raw_fps:.0f} frames/s)" if raw_fps else '')
  )
  extra = dict(
    lerobot_version=source.version,
    fps=source.info['fps'],
    frames_per_second=round(fps, 1),
    raw_decode_frames_per_second=round(raw_fps, 1) if raw_fps else None,
  )
  # A dataset this library exported carries its environment settings: then it trains beside that suite.
  settings = (source.info.get('moto_jax') or {}).get('env')
  return finish(
    out_dir, dict(kind='lerobot', src=os.path.abspath(src)), rules, low, high, summaries, extra, settings=settings
  )


EXPORT_CAMERA = 'observation.images.cam'


def exported_rules(action_dim: int) -> Rules:
  """The rules that read a `to_lerobot` export back as it was (actions already in [-1, 1])."""
  return Rules(
    image_key=EXPORT_CAMERA,
    reward_key='next.reward',
    success_key='next.success',
    done_key='next.done',
    action_low=(-1.0,) * action_dim,
    action_high=(1.0,) * action_dim,
  )


def _encode_video(path: str, frames: np.ndarray, fps: int) -> None:
  """H.264 mp4 (PyAV), as close to lossless as yuv420p allows."""
  import av

  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], 'yuv420p'
    stream.options = {'crf': '0'}
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())


def _png_cells(frames: np.ndarray):
  import io

  from PIL import Image
  import pyarrow as pa

  def png(frame):
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format='PNG')
    return {'bytes': buffer.getvalue(), 'path': None}

  return pa.array([png(f) for f in frames], type=pa.struct([('bytes', pa.binary()), ('path', pa.string())]))


def to_lerobot(
  episodes_dir: str,
  out: str,
  video: bool = True,
  fps: int = 10,
  camera: str = EXPORT_CAMERA,
  version: str = 'v2.1',
) -> dict:
  """Writes this library's episodes as a LeRobot dataset (v2.1: files per episode; v3.0: one table
  and one mp4 for all), the inverse of `from_lerobot`: a row per image with the action taken from it
  (`action[t + 1]`; zeros on the last row), `next.reward` (`reward[t + 1]`), `next.done` and
  `next.success` (the episode's success, on its last row); the camera as H.264 mp4 (lossy) or PNG
  bytes in the table (lossless). Returns meta/info.json."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  if version not in ('v2.1', 'v3.0'):
    raise DatasetError(f'version={version!r}; expected v2.1 or v3.0')
  files = ep_lib.episode_files(episodes_dir)
  if not files:
    raise DatasetError(f'{episodes_dir}: no episode files')
  first = ep_lib.load_episode(files[0])
  h, w = first['image'].shape[1:3]
  adim = first['action'].shape[1]
  tables, all_frames, meta, total = [], [], [], 0
  for i, path in enumerate(files):
    e = ep_lib.load_episode(path)
    n = len(e['image'])
    done, success = np.zeros(n, bool), np.zeros(n, bool)
    done[-1], success[-1] = bool(e['is_terminal'][-1]), bool(e['success'])
    columns = {
      'action': pa.array(
        list(np.concatenate([e['action'][1:], np.zeros((1, adim), np.float32)])), pa.list_(pa.float32(), adim)
      ),
      'next.reward': pa.array(np.concatenate([e['reward'][1:], [0.0]]).astype(np.float32)),
      'next.done': pa.array(done),
      'next.success': pa.array(success),
      'timestamp': pa.array(np.arange(n, dtype=np.float32) / fps),
      'frame_index': pa.array(np.arange(n, dtype=np.int64)),
      'episode_index': pa.array(np.full(n, i, np.int64)),
      'index': pa.array(np.arange(total, total + n, dtype=np.int64)),
      'task_index': pa.array(np.zeros(n, np.int64)),
    }
    if not video:
      columns[camera] = _png_cells(e['image'])
    table = pa.table(columns)
    if version == 'v2.1':
      chunk = i // 1000
      pq.write_table(table, _made(os.path.join(out, V2_DATA.format(episode_chunk=chunk, episode_index=i))))
      if video:
        _encode_video(
          os.path.join(out, V2_VIDEO.format(episode_chunk=chunk, video_key=camera, episode_index=i)), e['image'], fps
        )
      meta.append({'episode_index': i, 'tasks': ['task'], 'length': n})
    else:
      tables.append(table)
      all_frames.append(e['image'])
      row = {
        'episode_index': i,
        'tasks': ['task'],
        'length': n,
        'data/chunk_index': 0,
        'data/file_index': 0,
        'dataset_from_index': total,
        'dataset_to_index': total + n,
      }
      if video:
        row.update(
          {
            f'videos/{camera}/chunk_index': 0,
            f'videos/{camera}/file_index': 0,
            f'videos/{camera}/from_timestamp': total / fps,
            f'videos/{camera}/to_timestamp': (total + n) / fps,
          }
        )
      meta.append(row)
    total += n
  if version == 'v3.0':
    pq.write_table(pa.concat_tables(tables), _made(os.path.join(out, V3_DATA.format(chunk_index=0, file_index=0))))
    if video:
      _encode_video(
        os.path.join(out, V3_VIDEO.format(video_key=camera, chunk_index=0, file_index=0)),
        np.concatenate(all_frames),
        fps,
      )
    pq.write_table(
      pa.Table.from_pylist(meta), _made(os.path.join(out, 'meta', 'episodes', 'chunk-000', 'file-000.parquet'))
    )
    pq.write_table(pa.table({'task_index': [0], 'task': ['task']}), _made(os.path.join(out, 'meta', 'tasks.parquet')))
  else:
    with open(_made(os.path.join(out, 'meta', 'episodes.jsonl')), 'w') as f:
      f.writelines(json.dumps(m) + '\n' for m in meta)
    with open(os.path.join(out, 'meta', 'tasks.jsonl'), 'w') as f:
      f.write(json.dumps({'task_index': 0, 'task': 'task'}) + '\n')
  scalar = lambda dtype: {'dtype': dtype, 'shape': [1], 'names': None}
  info = {
    'codebase_version': version,
    'robot_type': 'unknown',
    'total_episodes': len(files),
    'total_frames': total,
    'total_tasks': 1,
    'chunks_size': 1000,
    'fps': fps,
    'splits': {'train': f'0:{len(files)}'},
    'data_path': V2_DATA if version == 'v2.1' else V3_DATA,
    'video_path': (V2_VIDEO if version == 'v2.1' else V3_VIDEO) if video else None,
    'features': {
      camera: {
        'dtype': 'video' if video else 'image',
        'shape': [h, w, 3],
        'names': ['height', 'width', 'channels'],
        **({'info': {'video.fps': fps, 'video.codec': 'h264'}} if video else {}),
      },
      'action': {'dtype': 'float32', 'shape': [adim], 'names': None},
      'next.reward': scalar('float32'),
      'next.done': scalar('bool'),
      'next.success': scalar('bool'),
      'timestamp': scalar('float32'),
      'frame_index': scalar('int64'),
      'episode_index': scalar('int64'),
      'index': scalar('int64'),
      'task_index': scalar('int64'),
    },
  }
  if version == 'v2.1':
    info['total_videos'], info['total_chunks'] = (len(files) if video else 0), (len(files) - 1) // 1000 + 1
  recorded = manifest_lib.read_manifest(episodes_dir)
  if recorded is not None and 'env' in recorded:  # (an extra key; LeRobot's readers ignore it)
    info['moto_jax'] = {'env': recorded['env'], 'collector': recorded.get('collector')}
  with open(_made(os.path.join(out, 'meta', 'info.json')), 'w') as f:
    json.dump(info, f, indent=2)
  return info


def _made(path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return path
