"""Converts other people's robot data to this library's episodes (moto_jax/data/: convert.py,
lerobot.py, minari_io.py).

  python -m launch.convert --from=lerobot --src=PATH --out=DIR --image_key=observation.images.top \
      --reward_key=next.reward --success_key=next.success --done_key=next.done
  python -m launch.convert --from=minari --src=<dataset id or folder> --out=DIR --success_key=success
  python -m launch.convert --from=npz --src=LOGS --out=DIR --image_key=obs --action_key=act \
      --success_rule=reward
  python -m launch.convert --to=lerobot --src=EPISODES --out=DIR [--video=False] [--lerobot_version=v3.0]
  python -m launch.convert --to=minari --src=EPISODES --out=<namespace/name-v0>

Then train on it with `--config.data.dir=DIR`.
"""

import sys

from absl import app, flags

_FROM = flags.DEFINE_enum('from', None, ['lerobot', 'minari', 'npz'], 'Source format.')
_TO = flags.DEFINE_enum(
  'to',
  None,
  ['lerobot', 'minari'],
  "Export this library's episodes (--src) to a format (minari: --out is the dataset id).",
)
_SRC = flags.DEFINE_string('src', None, 'Source dataset directory.')
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_IMAGE = flags.DEFINE_string('image_key', 'image', 'Camera / image field.')
_ACTION = flags.DEFINE_string('action_key', 'action', 'Action field.')
_REWARD = flags.DEFINE_string('reward_key', 'reward', 'Reward field ("" = no rewards).')
_SUCCESS = flags.DEFINE_string('success_key', 'success', 'Per-step success flag (with --success_rule=key).')
_RULE = flags.DEFINE_enum('success_rule', 'key', ['key', 'reward', 'none'], 'How an episode counts as a success.')
_DONE = flags.DEFINE_string('done_key', '', 'Per-step termination flag ("" = episodes end by time limit).')
_SIZE = flags.DEFINE_integer('image_size', 64, 'Images are resized to this square size.')
_LOW = flags.DEFINE_list('action_low', None, "Per-dimension action minimum (default: the data's).")
_HIGH = flags.DEFINE_list('action_high', None, "Per-dimension action maximum (default: the data's).")
_VERSION = flags.DEFINE_enum('lerobot_version', 'v2.1', ['v2.1', 'v3.0'], 'With --to=lerobot: the layout.')
_VIDEO = flags.DEFINE_bool('video', True, 'With --to=lerobot: the camera as mp4 (else PNG in the table).')
flags.mark_flags_as_required(['src', 'out'])


def main(argv):
  del argv
  from moto_jax.data import convert, lerobot, minari_io
  from moto_jax.errors import DatasetError

  try:
    if (_FROM.value is None) == (_TO.value is None):
      raise DatasetError('give exactly one of --from and --to')
    if _TO.value == 'lerobot':
      info = lerobot.to_lerobot(_SRC.value, _OUT.value, video=_VIDEO.value, version=_VERSION.value)
      print(f'Wrote {info["total_episodes"]} episodes ({info["total_frames"]} frames) to {_OUT.value}')
      return
    if _TO.value == 'minari':
      print(f'Wrote Minari dataset {minari_io.to_minari(_SRC.value, _OUT.value)} (in the local Minari root)')
      return
    rules = convert.Rules(
      image_key=_IMAGE.value,
      action_key=_ACTION.value,
      reward_key=_REWARD.value,
      success_key=_SUCCESS.value,
      success_rule=_RULE.value,
      done_key=_DONE.value,
      image_size=_SIZE.value,
      action_low=tuple(map(float, _LOW.value)) if _LOW.value else None,
      action_high=tuple(map(float, _HIGH.value)) if _HIGH.value else None,
    )
    if _FROM.value == 'lerobot':
      manifest = lerobot.from_lerobot(_SRC.value, _OUT.value, rules)
    elif _FROM.value == 'minari':
      manifest = minari_io.from_minari(_SRC.value, _OUT.value, rules)
    else:
      manifest = convert.from_npz(_SRC.value, _OUT.value, rules)
    print(
      f'Wrote {manifest["episodes"]} episodes to {_OUT.value}: success rate {manifest["success_rate"]:.2f}, '
      f'action scale {manifest["action_scale"]}. Train with --config.data.dir={_OUT.value}'
    )
  except DatasetError as e:
    sys.stderr.write(f'FATAL DatasetError: {e}\n')
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
