"""Test helpers shared by `tests/` and the benchmarks: a synthetic batch and the update's fingerprint.

The fingerprint is what a few updates compute from fixed inputs (every scalar metric of each update,
and the mean and mean |x| of every parameter array after them). `tests/golden/update_debug.json`
holds it for the `debug` preset; `tests/test_golden.py` checks the code against it, so a change
that alters what the update computes fails there until the golden file is rewritten on purpose
(`python -m benchmarks.update_params --write_golden`). Records in `results/` carry the golden file's
hash: a run made with other update numerics is shown as stale (`benchmarks/report.py`).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

ACTION_DIM = 4
GOLDEN = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'golden', 'update_debug.json'
)
RTOL = 1e-4  # across CPU kinds and XLA versions float32 round-off stays far below this after a few updates


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


def update_fingerprint(config, updates: int = 3, batch: int = 4) -> dict:
  """`updates` jitted updates of `config` on one device from key 0 and the synthetic batch.

  Returns {'updates', 'metrics': [{name: value} per update], 'params': {path: [mean, mean |x|]}}.
  """
  import jax
  from jax.sharding import Mesh

  from moto_jax import agent

  mesh = Mesh(np.asarray(jax.devices()[:1]), ('data',))
  parts = agent.build(config, ACTION_DIM)
  state = agent.create_train_state(parts, jax.random.key(0), mesh=mesh)
  update = agent.make_update_fn(parts, mesh=mesh)
  data = agent.shard_batch(synthetic_batch(0, batch, config.train.seq_len), mesh)
  metrics = []
  for step in range(updates):
    state, m = update(state, data, jax.random.key(step))
    metrics.append({k: float(v) for k, v in sorted(jax.device_get(m).items())})
  params = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params)):
    x = np.asarray(leaf, np.float64)
    params[jax.tree_util.keystr(path)] = [float(x.mean()), float(np.abs(x).mean())]
  return dict(updates=updates, metrics=metrics, params=params)


def compare_fingerprints(expected: dict, got: dict, rtol: float = RTOL) -> list[str]:
  """The differences beyond `rtol`, one line each (empty: the same update)."""
  problems = []
  if expected['updates'] != got['updates']:
    return [f'updates: {expected["updates"]} vs {got["updates"]}']
  for i, (a, b) in enumerate(zip(expected['metrics'], got['metrics'])):
    # Metrics added or removed since are not a change of what the update computes; shared ones must agree.
    for k in sorted(set(a) & set(b)):
      if not np.isclose(b[k], a[k], rtol=rtol, atol=rtol * 1e-2):
        problems.append(f'update {i}: {k} {a[k]:.7g} -> {b[k]:.7g}')
  if sorted(expected['params']) != sorted(got['params']):
    problems.append(f'parameters {sorted(set(expected["params"]) ^ set(got["params"]))[:5]} added or removed')
  else:
    for k, (mean, mean_abs) in expected['params'].items():
      g_mean, g_abs = got['params'][k]
      if abs(g_abs - mean_abs) > rtol * mean_abs + 1e-9 or abs(g_mean - mean) > rtol * mean_abs + 1e-9:
        problems.append(f'{k}: mean {mean:.7g} -> {g_mean:.7g}, mean |x| {mean_abs:.7g} -> {g_abs:.7g}')
  return problems


def golden_hash(path: str = GOLDEN) -> str | None:
  """A short hash of the golden file: the version of the update's numerics that records carry."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return _hash(json.load(f))


def golden_hash_at(commit: str) -> str | None:
  """The golden file's hash at `commit` of this checkout (None if unknown there)."""
  import subprocess

  root = os.path.dirname(os.path.dirname(GOLDEN))
  out = subprocess.run(
    ['git', '-C', root, 'show', f'{commit}:tests/golden/update_debug.json'], capture_output=True, text=True
  )
  return _hash(json.loads(out.stdout)) if out.returncode == 0 else None


def _hash(golden: dict) -> str:
  return hashlib.sha256(json.dumps(golden, sort_keys=True).encode()).hexdigest()[:12]
