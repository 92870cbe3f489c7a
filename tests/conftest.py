"""Shared test set-up: fast XLA compiles, the debug config and synthetic batches."""

import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault('MUJOCO_GL', 'egl')  # headless rendering, also when a test runs alone

from configs import metaworld
from moto_jax import agent
from moto_jax.networks.world_model import make_networks
from moto_jax.testing import ACTION_DIM, synthetic_batch  # noqa: F401 (the tests import them from here)

IMAGINATION_STARTS = 6  # the `start` fixture's latent states

# Compile time dominates at the debug sizes.
jax.config.update('jax_disable_most_optimizations', True)
# Many tests build the same jitted update again (a new Trainer per run): a compilation cache for
# this test session makes every compile after the first of a program a cache read. One folder for
# the session: pytest-xdist workers inherit it from the controller (which imports this file before
# it starts them), and so do the subprocesses that tests start (launch.main, the fault campaign).
_JIT_CACHE = os.environ.get('MOTO_JAX_TEST_JIT_CACHE') or tempfile.mkdtemp(prefix='moto_jax_test_jit_cache_')
os.environ.update(
  MOTO_JAX_TEST_JIT_CACHE=_JIT_CACHE,
  JAX_COMPILATION_CACHE_DIR=_JIT_CACHE,
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
)
jax.config.update('jax_compilation_cache_dir', _JIT_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def debug_config(**agent_overrides):
  """The debug preset, unlocked, with `config.agent` fields overridden."""
  config = metaworld.get_config('drawer-open,debug').unlock()
  for k, v in agent_overrides.items():
    config.agent[k] = v
  return config


def job_config(cache_dir, changes: dict | None = None, **train):
  """The debug preset for whole jobs, locked: datasets generated under `cache_dir`, `train` fields
  (`offline_steps=4`) and dotted `changes` (`{'data.dir': ...}`) set."""
  config = metaworld.get_config('drawer-open,debug').unlock()
  config.data.cache_dir = str(cache_dir)
  for k, v in train.items():
    config.train[k] = v
  for k, v in (changes or {}).items():
    *path, field = k.split('.')
    section = config
    for name in path:
      section = section[name]
    section[field] = v
  return config.lock()


@pytest.fixture(scope='module')
def config():
  return debug_config()


@pytest.fixture(scope='module')
def nets(config):
  """The debug-size networks (built once per test module)."""
  return make_networks(config, ACTION_DIM)


@pytest.fixture(scope='module')
def params(nets):
  return nets.init(jax.random.key(0))


@pytest.fixture(scope='module')
def start(nets):
  """IMAGINATION_STARTS random latent states to imagine from."""
  r = nets.rssm
  stoch = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (IMAGINATION_STARTS, r.groups), 0, r.classes), r.classes)
  return {'deter': jax.random.normal(jax.random.key(2), (IMAGINATION_STARTS, r.deter)), 'stoch': stoch}


@pytest.fixture(scope='module')
def batch(config):
  """A synthetic training batch of the debug preset's shape."""
  return synthetic_batch(0, config.train.batch_size, config.train.seq_len)


@pytest.fixture(scope='module')
def pairs(nets, batch):
  """The real (z_i, a_{i+1}) pairs of `batch` under random features."""
  b, t = batch['reward'].shape
  return agent.real_pairs(jax.random.normal(jax.random.key(3), (b, t, nets.feat_dim)), batch)


def constant_critic(critic_params, value: float):
  """Critic params whose every member outputs `value` (zero output kernel, bias = value)."""
  out = critic_params['q']['mlp']['out']
  out = {'kernel': jnp.zeros_like(out['kernel']), 'bias': jnp.full_like(out['bias'], value)}
  return {'q': {'mlp': {**critic_params['q']['mlp'], 'out': out}}}


def run_with_cpu_devices(script: str, devices: int) -> dict:
  """Runs `script` (Python source; `conftest` importable) in a fresh process whose CPU is split into
  `devices` XLA devices (fixed when JAX starts), and returns the JSON its last stdout line prints."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(
    os.environ,
    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=os.pathsep.join([os.path.join(root, 'tests'), root]),
  )
  out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=600, cwd=root)
  assert out.returncode == 0, out.stderr[-4000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


LOSS_STARTS = 5  # imagination starts of `loss_setup`


@pytest.fixture(scope='module')
def loss_setup(nets, params):
  """The loss tests' inputs (tests/test_equations.py, tests/test_cloning_filters.py): a start state
  of LOSS_STARTS rows, real pairs with an episode start inside a window, and mixed BC weights, and
  critics scaled up so that the twins differ clearly and depend on the action."""
  r = nets.rssm
  start = {
    'deter': jax.random.normal(jax.random.key(2), (LOSS_STARTS, r.deter)),
    'stoch': jax.nn.one_hot(jax.random.randint(jax.random.key(1), (LOSS_STARTS, r.groups), 0, r.classes), r.classes),
  }
  batch = synthetic_batch(0, 2, 8)
  batch['is_first'][1, 4] = True  # row 1: an episode starts at step 4 (pair 3 has no transition)
  batch['bc_weight'] = np.array([[1.0] * 8, [0.0] * 4 + [1.0] * 4], np.float32)
  feat = jax.random.normal(jax.random.key(3), (2, 8, nets.feat_dim))
  pairs = agent.real_pairs(feat, batch)
  critic = jax.tree.map(lambda x: 3.0 * x, params['critic'])
  target_critic = jax.tree.map(lambda x: 2.0 * x, params['critic'])
  return start, pairs, critic, target_critic
