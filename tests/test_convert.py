"""Converters (moto_jax/data/convert.py, lerobot.py, minari_io.py): npz logs with other key names,
and LeRobot v2.1 datasets written with pyarrow (tables) and PyAV (mp4), as the format's
meta/info.json specifies them."""

import dataclasses
import json
import os

import numpy as np
import pytest

from moto_jax.data import convert, lerobot, minari_io
from moto_jax.data import episodes as ep_lib
from moto_jax.errors import DatasetError


def log_episode(rng, n, success):
  """A robot log as gym writes it: row t = (obs_t, act_t, rew_t after act_t), 96 x 96 camera."""
  obs = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
  act = rng.uniform(0.0, 10.0, (n, 3))
  rew = np.zeros(n)
  rew[-2] = float(success)
  return dict(obs=obs, act=act, rew=rew, is_success=rew > 0, done=np.arange(n) == n - 1)


def test_npz_logs_with_other_names(tmp_path):
  rng = np.random.default_rng(0)
  logs = [log_episode(rng, n, s) for n, s in ((6, True), (5, False), (7, True))]
  logs[0]['act'][0] = [0.0, 0.0, 0.0]  # the data's minimum ...
  logs[2]['act'][3] = [10.0, 10.0, 10.0]  # ... and maximum
  src = tmp_path / 'logs'
  os.makedirs(src)
  for i, log in enumerate(logs):
    np.savez(src / f'run_{i}.npz', **log)
  rules = convert.Rules(image_key='obs', action_key='act', reward_key='rew', success_key='is_success', done_key='done')
  manifest = convert.from_npz(str(src), str(tmp_path / 'out'), rules, progress=False)
  files = ep_lib.episode_files(str(tmp_path / 'out'))
  assert len(files) == 3 and manifest['episodes'] == 3 and manifest['success_rate'] == pytest.approx(2 / 3)
  np.testing.assert_allclose(manifest['action_scale']['low'], 0.0)
  np.testing.assert_allclose(manifest['action_scale']['high'], 10.0)
  e = ep_lib.load_episode(files[0])
  assert e['image'].shape == (6, 64, 64, 3) and e['image'].dtype == np.uint8
  # Image t with the action and reward that led to it: action[0] = 0, action[t] = scaled act[t-1].
  np.testing.assert_allclose(e['action'][0], 0.0)
  np.testing.assert_allclose(e['action'][1:], logs[0]['act'][:-1] / 5.0 - 1.0, rtol=1e-6)
  np.testing.assert_allclose(e['reward'], [0, 0, 0, 0, 0, 1.0])
  assert bool(e['success']) and float(e['bc_weight']) == 1.0 and e['is_terminal'][-1] and e['discount'][-1] == 0
  assert not bool(ep_lib.load_episode(files[1])['success'])
  assert os.path.exists(tmp_path / 'out' / 'contact_sheet.png')

  with pytest.raises(DatasetError, match=r"run_0.npz: no field 'camera'"):
    convert.from_npz(str(src), str(tmp_path / 'bad'), convert.Rules(image_key='camera', action_key='act'))
  bounded = convert.Rules(
    image_key='obs',
    action_key='act',
    reward_key='rew',
    success_rule='reward',
    action_low=(0, 0, 0),
    action_high=(5, 10, 10),
  )
  with pytest.raises(DatasetError, match=r'field action, step \d+, dimension 0: .* outside \[0, 5\]'):
    convert.from_npz(str(src), str(tmp_path / 'bad2'), bounded, progress=False)


def our_episodes(rng, n_episodes=3, length=9):
  out = []
  for i in range(n_episodes):
    n = length + i
    action = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    action[0] = 0
    reward = np.zeros(n, np.float32)
    reward[-1] = float(i % 2 == 0)
    # Smooth images (video codecs keep them nearly intact).
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.stack(
      [np.stack([(xx * 4 + t * 8) % 256, (yy * 4) % 256, np.full_like(xx, 40 * i)], -1) for t in range(n)]
    )
    e = dict(
      image=image.astype(np.uint8),
      action=action,
      reward=reward,
      discount=np.ones(n, np.float32),
      is_first=np.arange(n) == 0,
      is_terminal=np.zeros(n, bool),
      success=np.array(i % 2 == 0),
      bc_weight=np.float32(i % 2 == 0),
    )
    out.append(ep_lib.validate(e))
  return out


LEROBOT_RULES = dataclasses.asdict(lerobot.exported_rules(4))


@pytest.mark.parametrize('version', ['v2.1', 'v3.0'])
@pytest.mark.parametrize('video', [False, True])
def test_lerobot_round_trip(tmp_path, video, version):
  """Episodes -> LeRobot (v2.1: files per episode; v3.0: one table and one mp4 for all, located by
  meta/episodes; pyarrow tables, PNG cells or PyAV H.264 mp4s) -> episodes: exact for everything but
  the video's images, which come back within a few levels."""
  rng = np.random.default_rng(1)
  src = tmp_path / 'ours'
  os.makedirs(src)
  episodes = our_episodes(rng)
  for i, e in enumerate(episodes):
    ep_lib.save_episode(str(src / ep_lib.episode_name(i)), e)
  info = lerobot.to_lerobot(str(src), str(tmp_path / 'lerobot'), video=video, version=version)
  meta = json.load(open(tmp_path / 'lerobot' / 'meta' / 'info.json'))
  assert meta == info and meta['codebase_version'] == version and meta['total_frames'] == 9 + 10 + 11
  camera = meta['features']['observation.images.cam']
  assert camera['dtype'] == ('video' if video else 'image') and camera['shape'] == [64, 64, 3]
  if video and version == 'v2.1':
    assert os.path.exists(
      tmp_path / 'lerobot' / 'videos' / 'chunk-000' / 'observation.images.cam' / 'episode_000002.mp4'
    )
  if version == 'v3.0':
    assert os.path.exists(tmp_path / 'lerobot' / 'meta' / 'episodes' / 'chunk-000' / 'file-000.parquet')
  lines = []
  manifest = lerobot.from_lerobot(
    str(tmp_path / 'lerobot'), str(tmp_path / 'back'), convert.Rules(**LEROBOT_RULES), progress=False, log=lines.append
  )
  assert manifest['lerobot_version'] == version and manifest['success_rate'] == pytest.approx(2 / 3)
  assert ('PyAV alone decodes' in lines[0]) == video
  back = [ep_lib.load_episode(f) for f in ep_lib.episode_files(str(tmp_path / 'back'))]
  assert len(back) == 3
  for a, b in zip(episodes, back):
    for k in ('action', 'reward', 'discount', 'is_first', 'is_terminal', 'success', 'bc_weight'):
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    if video:
      assert np.abs(a['image'].astype(int) - b['image'].astype(int)).mean() < 4.0
    else:
      np.testing.assert_array_equal(a['image'], b['image'])


def test_lerobot_errors_name_the_problem(tmp_path):
  with pytest.raises(DatasetError, match='no meta/info.json'):
    lerobot.from_lerobot(str(tmp_path), str(tmp_path / 'out'), convert.Rules())
  src = tmp_path / 'ours'
  os.makedirs(src)
  for i, e in enumerate(our_episodes(np.random.default_rng(2), 1)):
    ep_lib.save_episode(str(src / ep_lib.episode_name(i)), e)
  lerobot.to_lerobot(str(src), str(tmp_path / 'lr'), video=False)
  rules = dict(LEROBOT_RULES, image_key='observation.images.top')
  with pytest.raises(
    DatasetError, match=r"image_key='observation.images.top' is not a camera .*'observation.images.cam'"
  ):
    lerobot.from_lerobot(str(tmp_path / 'lr'), str(tmp_path / 'out'), convert.Rules(**rules), progress=False)


def test_policy_acts_in_the_robot_units_of_converted_data():
  """A policy whose run trained on converted data maps its [-1, 1] actions back to the recorded
  [low, high] per dimension; the same policy without a scale acts in [-1, 1]."""
  from conftest import ACTION_DIM, debug_config
  import jax

  from moto_jax import agent
  from moto_jax.policy import Policy

  config = debug_config()
  parts = agent.build(config, ACTION_DIM)
  params = agent.acting_params(agent.create_train_state(parts, jax.random.key(0)))
  scale = {'low': [0.0, -2.0, 5.0, 0.0], 'high': [10.0, 2.0, 5.0, 1.0]}  # dim 2 fixed at 5
  image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  plain = Policy(config, params, parts).act(image)
  robot = Policy(config, params, parts, action_scale=scale).act(image)
  assert np.abs(plain).max() <= 1.0
  low, high = np.array(scale['low']), np.array(scale['high'])
  np.testing.assert_allclose(robot, low + (plain + 1.0) / 2.0 * (high - low), rtol=1e-6)
  assert robot[2] == 5.0


class ImageDot:
  """A gymnasium env with image observations (32 x 32 uint8) for Minari's DataCollector."""

  @staticmethod
  def make():
    import gymnasium as gym

    class Env(gym.Env):
      def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.pos = None

      def _obs(self):
        image = np.zeros((32, 32, 3), np.uint8)
        p = np.clip((self.pos * 32).astype(int), 2, 29)
        image[p[0] - 2 : p[0] + 2, p[1] - 2 : p[1] + 2] = 255
        return image

      def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0.3, 0.7, 2)
        return self._obs(), {'success': False}

      def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float64), 0.0, 1.0)
        success = bool(self.pos[0] > 0.8)
        return self._obs(), float(success), success, False, {'success': success}

    return gym.wrappers.TimeLimit(Env(), max_episode_steps=6)


@pytest.mark.parametrize('data_format', ['hdf5', 'arrow'])
def test_minari_dataset_written_by_data_collector(tmp_path, monkeypatch, data_format):
  """A dataset that minari.DataCollector writes (infos recorded), read back through the minari
  package: T + 1 images with T actions keep every step; actions scaled from the Box [-2, 2]."""
  import minari

  monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
  env = minari.DataCollector(ImageDot.make(), record_infos=True, data_format=data_format)
  rng = np.random.default_rng(0)
  taken = []
  for episode in range(3):
    env.reset(seed=episode)
    actions, done = [], False
    while not done:
      a = rng.uniform(-2.0, 2.0, 2).astype(np.float32)
      a[0] = 2.0 if episode == 0 else a[0]  # episode 0 reaches the goal
      _, _, terminated, truncated, _ = env.step(a)
      actions.append(a)
      done = terminated or truncated
    taken.append(np.stack(actions))
  env.create_dataset(dataset_id=f'moto/dot-{data_format}-v0', algorithm_name='random')
  env.close()
  rules = convert.Rules(image_key='', success_key='success')
  manifest = minari_io.from_minari(f'moto/dot-{data_format}-v0', str(tmp_path / 'out'), rules, progress=False)
  assert manifest['episodes'] == 3 and manifest['collector']['kind'] == 'minari'
  np.testing.assert_allclose(manifest['action_scale']['low'], -2.0)
  episodes = [ep_lib.load_episode(f) for f in ep_lib.episode_files(str(tmp_path / 'out'))]
  for e, actions in zip(episodes, taken):
    assert len(e['image']) == len(actions) + 1 and e['image'].shape[1:] == (64, 64, 3)
    np.testing.assert_allclose(e['action'][1:], actions / 2.0, rtol=1e-6)
  assert bool(episodes[0]['success']) and episodes[0]['is_terminal'][-1] and episodes[0]['reward'][-1] == 1.0
  assert [bool(e['success']) for e in episodes[1:]] == [bool(e['reward'].max() > 0) for e in episodes[1:]]
  with pytest.raises(DatasetError, match="no info 'is_success'"):
    minari_io.from_minari(f'moto/dot-{data_format}-v0', str(tmp_path / 'bad'), convert.Rules(success_key='is_success'))


@pytest.mark.slow
@pytest.mark.integration
def test_offline_only_run_on_a_dataset_without_a_simulator(tmp_path):
  """configs/dataset.py: the action size and images from the episode files, offline training, and
  evaluations on held-out episodes (action error, reward and open-loop prediction); no environment
  steps; the checkpoint deploys as a Policy with the data's action scale."""
  from configs import dataset as dataset_config
  from moto_jax.policy import Policy
  from moto_jax.training import loop
  from moto_jax.training.logger import read_metrics

  rng = np.random.default_rng(3)
  src = tmp_path / 'logs'
  os.makedirs(src)
  for i in range(5):
    np.savez(src / f'run_{i}.npz', **log_episode(rng, 12, i % 2 == 0))
  data = tmp_path / 'mine'
  convert.from_npz(
    str(src),
    str(data),
    convert.Rules(image_key='obs', action_key='act', reward_key='rew', success_key='is_success', done_key='done'),
    progress=False,
  )
  config = dataset_config.get_config(f'{data},debug')
  assert (config.domain, config.data.dir, config.train.env_steps) == ('dataset', str(data), 0)
  lines = []
  summary = loop.train_and_evaluate(config, str(tmp_path / 'run'), log=lines.append)
  assert (
    summary['phase'] == 'done' and summary['env_steps'] == 0 and summary['grad_steps'] == config.train.offline_steps
  )
  assert summary['final_success_rate'] is None
  assert any(
    line.startswith('Held out for evaluation: 2 episodes (episode_000003.npz, episode_000004.npz)') for line in lines
  )
  done = [line for line in lines if line.startswith('Done:')]
  assert done and 'offline only' in done[0] and 'held-out' in done[0]
  evals = [r for r in read_metrics(str(tmp_path / 'run')) if r['phase'] == 'eval']
  assert len(evals) == 1 and evals[0]['heldout/episodes'] == 2
  for k in ('heldout/openloop_image_mse', 'heldout/reward_mae', 'diag/action_err_middle', 'diag/action_err_dim_2'):
    assert np.isfinite(evals[0][k]), k
  assert 0.0 < evals[0]['heldout/openloop_image_mse'] < 1.0
  policy = Policy.load(str(tmp_path / 'run'))
  assert policy.action_dim == 3
  action = policy.act(np.zeros((64, 64, 3), np.uint8))
  assert action.shape == (3,) and np.all((action >= 0.0) & (action <= 10.0))  # the logs' units
  bad = dataset_config.get_config(f'{data},debug').unlock()
  bad.train.env_steps = 10
  with pytest.raises(Exception, match=r"env_steps=10: suite 'dataset' has no environment"):
    loop.train_and_evaluate(bad.lock(), str(tmp_path / 'run2'), log=lambda *a: None)


def test_command_line(tmp_path):
  """`python -m launch.convert` as a user runs it: the result line, and one FATAL line for bad input."""
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  src = tmp_path / 'logs'
  os.makedirs(src)
  rng = np.random.default_rng(4)
  for i in range(2):
    np.savez(src / f'run_{i}.npz', **log_episode(rng, 6, i == 0))
  args = [
    sys.executable,
    '-m',
    'launch.convert',
    '--from=npz',
    f'--src={src}',
    f'--out={tmp_path / "out"}',
    '--image_key=obs',
    '--action_key=act',
    '--reward_key=rew',
    '--success_rule=reward',
  ]
  out = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert f'Wrote 2 episodes to {tmp_path / "out"}: success rate 0.50' in out.stdout
  bad = subprocess.run(
    args[:4] + [f'--src={tmp_path / "none"}', f'--out={tmp_path / "o2"}'],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode == 1 and 'Traceback' not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1] == f'FATAL DatasetError: {tmp_path / "none"}: no .npz files'


@pytest.mark.slow
@pytest.mark.integration
def test_drawer_open_through_lerobot_trains_as_the_original(tmp_path, monkeypatch):
  """The debug drawer-open dataset exported to LeRobot (PNG cells) and to Minari (no JPEG), each
  imported back, gives the same episodes; a debug run on the LeRobot round trip logs exactly the
  metrics of a run on the original."""
  from conftest import debug_config

  from moto_jax.training import loop, offline_data
  from moto_jax.training.logger import read_metrics

  config = debug_config().unlock()
  config.data.cache_dir = str(tmp_path / 'cache')
  original = offline_data.resolve(config, log=lambda *a: None)
  lerobot.to_lerobot(original, str(tmp_path / 'lerobot'), video=False)
  lerobot.from_lerobot(
    str(tmp_path / 'lerobot'), str(tmp_path / 'back'), convert.Rules(**LEROBOT_RULES), progress=False
  )
  monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
  minari_io.to_minari(original, 'moto/drawer-open-v0', data_format='arrow')
  minari_io.from_minari(
    'moto/drawer-open-v0', str(tmp_path / 'minari_back'), convert.Rules(image_key=''), progress=False
  )
  before = [ep_lib.load_episode(f) for f in ep_lib.episode_files(original)]
  for back in ('back', 'minari_back'):
    after = [ep_lib.load_episode(f) for f in ep_lib.episode_files(str(tmp_path / back))]
    assert len(before) == len(after) == config.data.num_episodes
    for a, b in zip(before, after):
      assert set(a) == set(b)
      for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f'{back}: {k}')
  logs = {}
  for name, directory in (('original', original), ('back', str(tmp_path / 'back'))):
    c = config.copy_and_resolve_references()
    c.data.dir = directory
    loop.train_and_evaluate(c.lock(), str(tmp_path / name), log=lambda *a: None)
    logs[name] = [{k: v for k, v in r.items() if k != 'time'} for r in read_metrics(str(tmp_path / name))]
  assert len(logs['original']) > 5 and logs['original'] == logs['back']


@pytest.mark.parametrize('data_format', ['hdf5', 'arrow'])
def test_minari_round_trip(tmp_path, monkeypatch, data_format):
  """Episodes -> Minari (create_dataset_from_buffers, images stored losslessly) -> episodes: exact."""
  monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
  src = tmp_path / 'ours'
  os.makedirs(src)
  episodes = our_episodes(np.random.default_rng(5))
  for i, e in enumerate(episodes):
    ep_lib.save_episode(str(src / ep_lib.episode_name(i)), e)
  minari_io.to_minari(str(src), f'moto/ours-{data_format}-v0', data_format=data_format)
  minari_io.from_minari(
    f'moto/ours-{data_format}-v0', str(tmp_path / 'back'), convert.Rules(image_key=''), progress=False
  )
  back = [ep_lib.load_episode(f) for f in ep_lib.episode_files(str(tmp_path / 'back'))]
  assert len(back) == len(episodes)
  for a, b in zip(episodes, back):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
