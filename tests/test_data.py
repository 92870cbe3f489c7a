"""Episode files, scripted collection, the episode store."""

import os

import numpy as np
import pytest

from configs import metaworld as mw_config
from moto_jax import suites
from moto_jax.data import episodes as ep_lib
from moto_jax.data import manifest
from moto_jax.data import rollout as rollout_lib
from moto_jax.data import store as store_lib

# One pytest-xdist worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group('data')


def fake_episode(length, action_dim=4, success=False, seed=0):
  rng = np.random.default_rng(seed)
  n = length + 1
  return dict(
    image=rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
    action=np.concatenate([np.zeros((1, action_dim)), rng.uniform(-1, 1, (length, action_dim))]).astype(np.float32),
    reward=np.concatenate([[0.0], rng.uniform(0, 1, length)]).astype(np.float32),
    discount=np.ones(n, np.float32),
    is_first=np.arange(n) == 0,
    is_terminal=np.zeros(n, bool),
    success=np.array(success),
    bc_weight=np.float32(success),
    step_index=np.arange(n),
  )  # extra per-step key: lets tests see where windows come from


@pytest.fixture(scope='module')
def drawer_dataset(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('data') / 'drawer-open')
  config = mw_config.get_config('drawer-open')
  m = suites.get('metaworld').collect(config, out, num_episodes=10, progress=False)
  return out, m


def test_scripted_drawer_open_succeeds(drawer_dataset):
  out, m = drawer_dataset
  assert m['episodes'] == 10 and m['transitions'] == 2000
  eps = [ep_lib.load_episode(p) for p in ep_lib.episode_files(out)]
  assert len(eps) == 10
  assert sum(bool(e['success']) for e in eps) >= 8
  for e in eps:
    assert e['image'].shape == (201, 64, 64, 3) and e['image'].dtype == np.uint8
    assert np.all(e['action'][0] == 0) and e['reward'][0] == 0 and e['is_first'][0]
    assert bool(e['success']) == (e['reward'].sum() > 0) == bool(e['bc_weight'])
  assert m['success_rate'] == np.mean([bool(e['success']) for e in eps])
  assert m['env']['render']['quality'] == 'fast'
  assert os.path.exists(os.path.join(out, 'contact_sheet.png'))


def test_collection_is_reproducible_and_resumes(drawer_dataset, tmp_path):
  out, _ = drawer_dataset
  config = mw_config.get_config('drawer-open')
  again = str(tmp_path / 'again')
  suites.get('metaworld').collect(config, again, num_episodes=2, progress=False)
  os.remove(os.path.join(again, ep_lib.episode_name(1)))  # as if interrupted
  suites.get('metaworld').collect(config, again, num_episodes=2, progress=False)
  for i in range(2):
    a = ep_lib.load_episode(os.path.join(out, ep_lib.episode_name(i)))
    b = ep_lib.load_episode(os.path.join(again, ep_lib.episode_name(i)))
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['action'], b['action'])


def test_dataset_settings_mismatch_is_refused(drawer_dataset):
  out, m = drawer_dataset
  settings = dict(m['env'], action_repeat=1)
  with pytest.raises(ValueError, match='action_repeat'):
    manifest.check_settings(out, settings)


def test_round_trip_is_exact(tmp_path):
  e = fake_episode(30, success=True)
  path = ep_lib.save_episode(str(tmp_path / 'ep.npz'), e)
  back = ep_lib.load_episode(path)
  assert set(back) == set(e)
  for k in e:
    np.testing.assert_array_equal(back[k], e[k])
    assert back[k].dtype == ep_lib.DTYPES.get(k, np.asarray(e[k]).dtype)
  assert not [f for f in os.listdir(tmp_path) if 'tmp' in f]  # no temp file left behind


def test_store_add_persists_and_reloads(tmp_path):
  s = store_lib.EpisodeStore(seq_len=5, online_dir=str(tmp_path / 'online'))
  for i in range(3):
    s.add(fake_episode(10 + i, seed=i))
  assert len(os.listdir(tmp_path / 'online')) == 3
  s2 = store_lib.EpisodeStore(seq_len=5, online_dir=str(tmp_path / 'online'))
  assert s2.num_episodes('online') == 3 and s2.num_steps('online') == 10 + 11 + 12
  np.testing.assert_array_equal(s2.episodes('online')[2]['image'], fake_episode(12, seed=2)['image'])
  s2.add(fake_episode(4))
  assert sorted(os.listdir(tmp_path / 'online'))[-1] == ep_lib.episode_name(3)


def test_windows_never_cross_boundaries_and_cover_uniformly(tmp_path):
  s = store_lib.EpisodeStore(seq_len=4)
  lengths = [3, 5, 12]  # 4, 6 and 13 steps: 7, 9 and 16 raw window starts
  for i, n in enumerate(lengths):
    e = fake_episode(n, seed=i)
    e['image'][:] = i  # episode id in every pixel
    s.add(e, part='offline')
  s.add(fake_episode(2, seed=9), part='offline')  # 3 steps < seq_len: never sampled
  assert s.too_short == 1
  rng = np.random.default_rng(0)
  batch = s.sample(4000, rng)
  assert batch['image'].shape == (4000, 4, 8, 8, 3) and batch['image'].dtype == np.uint8
  assert batch['bc_weight'].shape == (4000, 4)
  ep_id = batch['image'][:, :, 0, 0, 0]
  assert np.all(ep_id == ep_id[:, :1])  # one episode per window
  assert np.all(np.diff(batch['step_index'], axis=1) == 1)  # consecutive steps
  first = batch['is_first']
  assert not np.any(first[:, 1:])  # an episode start only at t=0
  raw_starts = np.array([4 + 3, 6 + 3, 13 + 3])  # L + T - 1 raw starts per episode
  counts = np.bincount(ep_id[:, 0], minlength=3)
  np.testing.assert_allclose(counts / 4000, raw_starts / raw_starts.sum(), atol=0.03)


def test_step_weights_follow_the_window_and_stay_in_memory(tmp_path):
  """A store with `step_weights` gives each window the weights of its own steps (here: 1 on even
  steps of a failed episode); without, every step carries its episode's bc_weight. Files keep the
  episode format."""
  weights = lambda e: (e['step_index'] % 2 == 0).astype(np.float32)
  s = store_lib.EpisodeStore(seq_len=4, online_dir=str(tmp_path / 'online'), step_weights=weights)
  s.add(fake_episode(9, success=False), part='online')
  batch = s.sample(50, np.random.default_rng(0))
  np.testing.assert_array_equal(batch['bc_weight'], (batch['step_index'] % 2 == 0).astype(np.float32))
  assert 'bc_steps' not in batch and ep_lib.carries_prior(s.episodes('online')[0])
  assert 'bc_steps' not in ep_lib.load_episode(ep_lib.episode_files(str(tmp_path / 'online'))[0])
  plain = store_lib.EpisodeStore(seq_len=4)
  plain.add(fake_episode(9, success=True), part='offline')
  plain.add(fake_episode(9, success=False, seed=1), part='offline')
  batch = plain.sample(40, np.random.default_rng(0))
  assert set(np.unique(batch['bc_weight'].min(1) == batch['bc_weight'].max(1))) == {True}
  assert not ep_lib.carries_prior(plain.episodes('offline')[1])
  with pytest.raises(ValueError, match=r'step_weights gave shape \(3,\); expected \(10,\)'):
    store_lib.EpisodeStore(seq_len=4, step_weights=lambda e: np.zeros(3)).add(fake_episode(9), part='offline')


@pytest.mark.parametrize('cover_edges', [True, False])
def test_every_step_of_an_episode_is_sampled_comparably(cover_edges):
  """The reset step (where every evaluation starts) is trained on about as often as any other.

  Windows of T=32 from one 201-step episode: with edge-clamped starts every step is covered by
  between T and 2T-1 of the L+T-1 raw starts; with uniform valid starts only, step 0 is covered
  by 1 of the L-T+1 starts (the old sampler: 32x rarer than a middle step).
  """
  t, length = 32, 201
  s = store_lib.EpisodeStore(seq_len=t, cover_edges=cover_edges)
  e = fake_episode(length - 1)
  s.add(e, part='offline')
  rng = np.random.default_rng(0)
  hits = np.zeros(length)
  b = s.sample(20000, rng)
  for row in b['step_index']:
    hits[row] += 1
  freq = hits / 20000
  np.testing.assert_allclose(freq, s.step_coverage(length), atol=0.02)  # analytic = sampled
  middle = freq[length // 2]
  ratio = freq / middle
  if cover_edges:
    assert ratio.min() > 0.85 and ratio.max() < 2.1, (ratio.min(), ratio.max())
    assert freq[0] > 0.8 * middle
  else:
    assert freq[0] < 0.1 * middle  # what the edge clamp fixes


def test_offline_online_share(tmp_path):
  s = store_lib.EpisodeStore(seq_len=4, online_fraction=0.25)  # share = min(0.25, online / all steps)
  off, on = fake_episode(20), fake_episode(20)
  off['reward'][:] = 0.0
  on['reward'][:] = 1.0
  s.add(off, part='offline')
  b = s.sample(8, np.random.default_rng(0))
  assert b['reward'].sum() == 0  # no online data yet: all offline
  del on['step_index']  # online episodes may lack extra keys
  s.add(on, part='online')
  b = s.sample(8, np.random.default_rng(0))
  assert (b['reward'][:, 0] == 1).sum() == 2  # 25% of 8
  assert 'step_index' not in b and b['image'].shape[0] == 8
  # A single small online episode among much offline data: its share follows the stored steps.
  s2 = store_lib.EpisodeStore(seq_len=4, online_fraction=0.5)
  for i in range(3):
    s2.add(fake_episode(20, seed=i), part='offline')
  s2.add(on, part='online')
  assert s2._split(16) == (12, 4)  # 20 / 80 of the steps -> 4 of 16


def test_corrupt_file_named_or_skipped(tmp_path):
  d = tmp_path / 'data'
  ep_lib.save_episode(str(d / ep_lib.episode_name(0)), fake_episode(10))
  path = ep_lib.save_episode(str(d / ep_lib.episode_name(1)), fake_episode(10))
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[: len(data) // 2])  # truncated
  with pytest.raises(ep_lib.CorruptEpisodeError, match='episode_000001.npz'):
    store_lib.EpisodeStore(seq_len=4).load_directory(str(d))
  s = store_lib.EpisodeStore(seq_len=4, skip_corrupt=True)
  assert s.load_directory(str(d)) == 1
  assert s.stats()['skipped_corrupt'] == 1
  assert s.sample(3, np.random.default_rng(0))['image'].shape[0] == 3


def test_malformed_episode_rejected(tmp_path):
  e = fake_episode(5)
  e['reward'] = e['reward'][:-1]
  with pytest.raises(ep_lib.CorruptEpisodeError, match="'reward'"):
    ep_lib.save_episode(str(tmp_path / 'x.npz'), e)
  assert not os.path.exists(tmp_path / 'x.npz')


def test_float_images_and_wrong_frame_size_are_named(tmp_path):
  e = fake_episode(5)
  e['image'] = e['image'].astype(np.float32) / 255.0  # [0, 1] floats: would cast to black
  with pytest.raises(ep_lib.CorruptEpisodeError, match='float32.*expected uint8'):
    ep_lib.save_episode(str(tmp_path / 'x.npz'), e)
  # Smaller frames are refused when loaded, naming the file and the expected shape.
  d = tmp_path / 'data'
  ep_lib.save_episode(str(d / ep_lib.episode_name(0)), fake_episode(6))
  small = fake_episode(6)
  small['image'] = small['image'][:, :4, :4]  # fake episodes have 8 x 8 frames
  ep_lib.save_episode(str(d / ep_lib.episode_name(1)), small)
  with pytest.raises(ep_lib.CorruptEpisodeError, match=r'episode_000001.npz: frames of shape \(4, 4, 3\)'):
    store_lib.EpisodeStore(seq_len=4, image_shape=(8, 8, 3)).load_directory(str(d))
  s = store_lib.EpisodeStore(seq_len=4, image_shape=(8, 8, 3), skip_corrupt=True)
  assert s.load_directory(str(d)) == 1 and s.stats()['skipped_corrupt'] == 1
  # An episode the run collected itself: a bug, raised with its traceback (not as a user error).
  with pytest.raises(RuntimeError, match='collected by this run is invalid: episode: frames of shape') as err:
    s.add(small)
  assert isinstance(err.value.__cause__, ep_lib.CorruptEpisodeError)


def test_actions_rewards_and_action_dim_are_checked_and_named(tmp_path):
  """Out-of-range or non-finite actions and non-finite rewards are refused, naming the file, the key,
  the value and the step; an action dimension other than the environment's is refused at load."""
  cases = (
    ('action', 1.5, r"'action' is 1\.5 at step 3, dimension 2; actions must be finite and in \[-1, 1\]"),
    ('action', np.nan, r"'action' is nan at step 3"),
    ('reward', np.inf, r"'reward' is inf at step 3; expected finite values"),
  )
  for key, value, message in cases:
    e = fake_episode(5)
    e[key] = e[key].copy()
    if key == 'action':
      e[key][3, 2] = value
    else:
      e[key][3] = value
    with pytest.raises(ep_lib.CorruptEpisodeError, match='x.npz: key ' + message):
      ep_lib.save_episode(str(tmp_path / 'x.npz'), e)
    assert not os.path.exists(tmp_path / 'x.npz')
  ok = fake_episode(5)
  ok['action'] = np.clip(ok['action'], -1.0, 1.0)
  ok['action'][1, 0] = 1.0 + 1e-7  # float round-off is allowed
  ep_lib.validate(ok)
  d = tmp_path / 'data'
  ep_lib.save_episode(str(d / ep_lib.episode_name(0)), fake_episode(6))
  ep_lib.save_episode(str(d / ep_lib.episode_name(1)), fake_episode(6, action_dim=9))
  with pytest.raises(
    ep_lib.CorruptEpisodeError,
    match=r"episode_000001.npz: actions of dimension 9; this run's environment has 4.*skip_corrupt=True",
  ):
    store_lib.EpisodeStore(seq_len=4, action_dim=4).load_directory(str(d))
  s = store_lib.EpisodeStore(seq_len=4, action_dim=4, skip_corrupt=True)
  assert s.load_directory(str(d)) == 1 and s.stats()['skipped_corrupt'] == 1


def test_memory_per_frame_reported():
  s = store_lib.EpisodeStore(seq_len=2)
  s.add(fake_episode(9), part='offline')
  bpf = s.stats()['bytes_per_frame']
  assert 8 * 8 * 3 <= bpf < 8 * 8 * 3 + 100


def test_lock_step_rollouts_equal_single_rollouts():
  """`rollout_batch` records each episode exactly as `rollout` does for the same policy, also
  with more environments than episodes (a padding row)."""
  from moto_jax.suites import make_env

  config = mw_config.get_config('drawer-open,debug')
  envs = [make_env(config) for _ in range(3)]
  seeds = [rollout_lib.episode_seed(0, k) for k in range(2)]

  def action_of(image, t):  # deterministic in the observation and the step
    m = image.reshape(-1, 3).mean(0) / 255.0
    return np.tanh(np.array([m[0] - 0.4, 0.5 - m[1], np.sin(t), 0.3 * t - 1.0], np.float32))

  steps = np.zeros(3, int)

  def batched(images, is_first):
    steps[is_first] = 0
    out = np.stack([action_of(im, t) for im, t in zip(images, steps)])
    steps[:] += 1
    return out

  together = rollout_lib.rollout_batch(envs, batched, seeds)
  for seed, got in zip(seeds, together):
    t = [0]

    def single(obs, info):
      t[0] += 1
      return action_of(obs['image'], t[0] - 1)

    alone = rollout_lib.rollout(envs[0], single, seed)
    assert alone.keys() == got.keys()
    for k in alone:
      np.testing.assert_array_equal(alone[k], got[k], err_msg=k)
  assert together[0]['image'].shape[0] == config.env.episode_length + 1
  assert not np.array_equal(together[0]['image'], together[1]['image'])
  with pytest.raises(ValueError, match='3 episodes need as many environments'):
    rollout_lib.rollout_batch(envs[:2], batched, seeds + [7])
  for env in envs:
    env.close()
