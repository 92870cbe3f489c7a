"""launch.convert's LeRobot video conversion against PyAV's own decode rate, on the same files.

  python -m benchmarks.convert_speed [--episodes=20] [--length=200] [--size=64] [--record=results/convert.jsonl]

Writes a synthetic LeRobot v2.1 dataset (H.264 mp4s made with PyAV), decodes every video with PyAV
alone, then converts the dataset; prints both rates and their ratio (the conversion should be bound
by decoding: within 1.5x).
"""

import argparse
import os
import tempfile
import time

import numpy as np


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--episodes', type=int, default=20)
  p.add_argument('--length', type=int, default=200)
  p.add_argument('--size', type=int, default=64)
  p.add_argument(
    '--record', default=None, help='append the measurement to this JSON-lines file (e.g. results/convert.jsonl)'
  )
  args = p.parse_args()
  from moto_jax.data import episodes as ep_lib
  from moto_jax.data import lerobot

  root = tempfile.mkdtemp(prefix='convert_speed_')
  ours = os.path.join(root, 'ours')
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0 : args.size, 0 : args.size]
  for i in range(args.episodes):
    n = args.length + 1
    frames = np.stack(
      [np.stack([(xx * 4 + t * 3) % 256, (yy * 4 + t) % 256, np.full_like(xx, 12 * i)], -1) for t in range(n)]
    )
    action = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    action[0] = 0
    e = dict(
      image=frames.astype(np.uint8),
      action=action,
      reward=np.zeros(n, np.float32),
      discount=np.ones(n, np.float32),
      is_first=np.arange(n) == 0,
      is_terminal=np.zeros(n, bool),
      success=np.array(True),
      bc_weight=np.float32(1),
    )
    ep_lib.save_episode(os.path.join(ours, ep_lib.episode_name(i)), e)
  lerobot.to_lerobot(ours, os.path.join(root, 'lerobot'), video=True)
  source = lerobot.LeRobotSource(os.path.join(root, 'lerobot'))
  start = time.time()
  decoded = sum(len(lerobot.decode_video(source.video_path(i, lerobot.EXPORT_CAMERA))) for i in range(args.episodes))
  raw = decoded / (time.time() - start)
  rules = lerobot.exported_rules(4)
  manifest = lerobot.from_lerobot(
    os.path.join(root, 'lerobot'), os.path.join(root, 'back'), rules, progress=False, log=lambda *a: None
  )
  rate = manifest['frames_per_second']
  print(
    f'{args.episodes} episodes x {args.length + 1} frames at {args.size}x{args.size}: PyAV decode {raw:.0f} frames/s, '
    f'launch.convert {rate:.0f} frames/s, ratio {raw / rate:.2f}x'
  )
  if args.record:
    record(args, raw, rate)


def record(args, raw: float, rate: float) -> None:
  """One JSON line per measurement, with the commit, machine and command; refused from a dirty tree."""
  import json
  import sys

  from moto_jax import provenance

  prov = provenance.collect()
  if prov['dirty']:
    print(f'Not recorded in {args.record}: tracked files differ from the commit {prov["commit"]}')
    return
  row = dict(
    episodes=args.episodes,
    frames=args.episodes * (args.length + 1),
    size=args.size,
    pyav_fps=round(raw, 1),
    convert_fps=round(rate, 1),
    ratio=round(raw / rate, 3),
    load=round(os.getloadavg()[0], 2),
    commit=prov['commit'],
    machine=prov['machine'],
    date=prov['date'],
    command='python -m benchmarks.convert_speed ' + ' '.join(sys.argv[1:]),
  )
  os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
  with open(args.record, 'a') as f:
    f.write(json.dumps(row, sort_keys=True) + '\n')
  print(f'Recorded in {args.record}')


if __name__ == '__main__':
  main()
