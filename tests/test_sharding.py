"""Data parallelism: `update` and the refit over a 4-device mesh match the same on one device.

Runs in a subprocess, because the number of virtual CPU devices is fixed when JAX starts.
"""

import textwrap

from conftest import run_with_cpu_devices
import pytest

SCRIPT = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from jax.sharding import Mesh
    jax.config.update('jax_disable_most_optimizations', True)
    from conftest import ACTION_DIM, debug_config, synthetic_batch
    from moto_jax import agent

    assert jax.device_count() == 4, jax.devices()
    config = debug_config()
    batch = synthetic_batch(0, 4, config.train.seq_len)   # global batch B = 4
    results = {}
    for name, devices in (('one', jax.devices()[:1]), ('four', jax.devices())):
      mesh = Mesh(np.asarray(devices), ('data',))
      state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0), mesh=mesh)
      update = agent.make_update_fn(agent.build(config, ACTION_DIM), mesh=mesh)
      sharded = agent.shard_batch(batch, mesh)
      assert len(sharded['image'].sharding.device_set) == len(devices)
      for step in range(2):
        state, metrics = update(state, sharded, jax.random.key(step))
      results[name] = (jax.tree.map(np.asarray, state.params), float(metrics['wm/loss']))
    (p1, l1), (p4, l4) = results['one'], results['four']
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4)))
    scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(p1))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves(p1), jax.tree.leaves(agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0)).params)))

    from moto_jax.agent import refit as refit_lib
    from test_refit import episodes
    config.train.batch_size, config.train.refit_steps = 4, 3
    arrays = refit_lib.episode_arrays(episodes())
    refits = {}
    for name, devices in (('one', jax.devices()[:1]), ('four', jax.devices())):
      mesh = Mesh(np.asarray(devices), ('data',))
      state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0), mesh=mesh)
      state, _ = refit_lib.make_refit_fn(agent.build(config, ACTION_DIM), mesh=mesh)(state, arrays, jax.random.key(3))
      refits[name] = jax.tree.map(np.asarray, state.params['actor'])
    refit_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves(refits['one']), jax.tree.leaves(refits['four'])))
    print(json.dumps({'max_diff': diff, 'scale': scale, 'moved': moved, 'loss_one': l1, 'loss_four': l4,
                      'refit_diff': refit_diff}))
""")


@pytest.mark.slow
@pytest.mark.integration
def test_four_devices_match_one():
  result = run_with_cpu_devices(SCRIPT, 4)
  assert result['moved'] > 1e-4  # the updates changed the parameters
  assert result['max_diff'] < 1e-4, result  # ... identically on 1 and 4 devices
  assert abs(result['loss_one'] - result['loss_four']) < 1e-3 * abs(result['loss_one'])
  assert result['refit_diff'] < 1e-4, result  # the refit's windows split over 4 devices: same actor
