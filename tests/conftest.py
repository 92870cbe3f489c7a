"""Shared test set-up: fast XLA compiles, the debug config and synthetic batches."""
import json
import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

os.environ.setdefault('MUJOCO_GL', 'egl')     # headless rendering, also when a test runs alone

from configs import metaworld
from moto_jax.networks.world_model import make_networks

# Compile time dominates at the debug sizes.
jax.config.update('jax_disable_most_optimizations', True)
# Many tests build the same jitted update again (a new Trainer per run): a compilation cache for
# this test session makes every compile after the first of a program a cache read. One folder for
# the session: pytest-xdist workers inherit it from the controller (which imports this file before
# it starts them), and so do the subprocesses that tests start (launch.main, the fault campaign).
_JIT_CACHE = os.environ.get('MOTO_JAX_TEST_JIT_CACHE') or tempfile.mkdtemp(prefix='moto_jax_test_jit_cache_')
os.environ.update(MOTO_JAX_TEST_JIT_CACHE=_JIT_CACHE, JAX_COMPILATION_CACHE_DIR=_JIT_CACHE,
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
jax.config.update('jax_compilation_cache_dir', _JIT_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)

ACTION_DIM = 4


def debug_config(**agent_overrides):
  """The debug preset, unlocked, with `config.agent` fields overridden."""
  config = metaworld.get_config('drawer-open,debug').unlock()
  for k, v in agent_overrides.items():
    config.agent[k] = v
  return config


def synthetic_batch(seed: int, batch: int, length: int, action_dim: int = ACTION_DIM) -> dict:
  """A batch in the episode-store layout. Row 0 starts at a reset, the others mid-episode.

  Images are smooth colour gradients whose brightness follows the actions (learnable);
  rewards are a function of the image brightness.
  """
  rng = np.random.default_rng(seed)
  action = rng.uniform(-1, 1, (batch, length, action_dim)).astype(np.float32)
  action[0, 0] = 0.0
  level = np.cumsum(action[..., 0], axis=1) * 0.1 + rng.uniform(0.3, 0.7, (batch, 1))
  ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32)
  image = level[..., None, None, None] * ramp[None, None, :, None, None] + 0.1 * ramp[None, None, None, :, None]
  image = image + np.array([0.0, 0.2, 0.4], np.float32)
  image = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  reward = level.astype(np.float32)
  reward[0, 0] = 0.0
  is_first = np.zeros((batch, length), bool)
  is_first[0, 0] = True
  return {
      'image': image,
      'action': action,
      'reward': reward,
      'discount': np.ones((batch, length), np.float32),
      'is_first': is_first,
      'is_terminal': np.zeros((batch, length), bool),
      'bc_weight': np.repeat((np.arange(batch) % 2 == 0).astype(np.float32)[:, None], length, 1),
  }


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


def run_with_cpu_devices(script: str, devices: int) -> dict:
  """Runs `script` (Python source; `conftest` importable) in a fresh process whose CPU is split into
  `devices` XLA devices (fixed when JAX starts), and returns the JSON its last stdout line prints."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu',
             PYTHONPATH=os.pathsep.join([os.path.join(root, 'tests'), root]))
  out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True,
                       timeout=600, cwd=root)
  assert out.returncode == 0, out.stderr[-4000:]
  return json.loads(out.stdout.strip().splitlines()[-1])
