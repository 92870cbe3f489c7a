"""Multi-host data parallelism for real: the update run as 2 processes through `jax.distributed`
(CPU collectives over gloo, one CPU device per process) equals the same update in 1 process over
2 CPU devices, bit for bit.

Each process feeds its own rows of the global batch (`agent.shard_batch` builds the global array
from process-local data), as each host of a pod or cluster does.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.xdist_group('multihost')

SCRIPT = textwrap.dedent("""
    import json, os, sys
    process_id, processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={2 // processes}'
    import jax
    import numpy as np
    jax.config.update('jax_disable_most_optimizations', True)
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    if processes > 1:
      jax.distributed.initialize(coordinator_address=f'localhost:{port}', num_processes=processes,
                                 process_id=process_id)
    from conftest import ACTION_DIM, debug_config, synthetic_batch
    from moto_jax import agent

    assert jax.process_count() == processes and jax.device_count() == 2, (jax.process_count(), jax.devices())
    config = debug_config()
    batch = synthetic_batch(0, 4, config.train.seq_len)                      # global batch B = 4
    rows = 4 // processes
    local = {k: v[process_id * rows:(process_id + 1) * rows] for k, v in batch.items()}
    mesh = agent.default_mesh()
    state = agent.create_train_state(agent.build(config, ACTION_DIM), jax.random.key(0), mesh=mesh)
    update = agent.make_update_fn(agent.build(config, ACTION_DIM), mesh=mesh)
    for step in range(2):
      state, metrics = update(state, agent.shard_batch(local, mesh), jax.random.key(step))
    local_copy = lambda x: np.asarray(x.addressable_data(0))                 # replicated: any shard
    leaves = [local_copy(x) for x in jax.tree.leaves(state.params)]
    np.save(out, np.concatenate([x.ravel() for x in leaves]))
    print('RESULT', json.dumps({'loss': float(local_copy(metrics['wm/loss'])), 'processes': jax.process_count()}),
          flush=True)
""")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_match_one(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'tests'), ROOT]))
  env.pop('XLA_FLAGS', None)
  port = str(free_port())
  runs = {
    name: (pid, n, tmp_path / f'{name}.npy') for name, pid, n in (('host0', 0, 2), ('host1', 1, 2), ('single', 0, 1))
  }
  procs, logs = {}, {}
  try:
    for name, (pid, n, out) in runs.items():
      logs[name] = open(tmp_path / f'{name}.log', 'w+')
      procs[name] = subprocess.Popen(
        [sys.executable, '-c', SCRIPT, str(pid), str(n), port, str(out)],
        env=env,
        cwd=ROOT,
        stdout=logs[name],
        stderr=subprocess.STDOUT,
        text=True,
      )
    deadline = time.time() + 600
    # A host that fails leaves its peer waiting for collectives: stop everything at the first failure.
    while any(p.poll() is None for p in procs.values()):
      failed = [name for name, p in procs.items() if p.poll() not in (None, 0)]
      assert not failed and time.time() < deadline, f'{failed or "timeout"}: ' + ' | '.join(
        f'{name}: {read_tail(logs[name])}' for name in (failed or procs)
      )
      time.sleep(0.5)
    failed = [name for name, p in procs.items() if p.returncode != 0]
    assert not failed, ' | '.join(f'{name}: {read_tail(logs[name])}' for name in failed)
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.kill()
        p.wait()
  results = {
    name: json.loads(
      [line for line in read_tail(log, 10**6).splitlines() if line.startswith('RESULT ')][-1][len('RESULT ') :]
    )
    for name, log in logs.items()
  }
  assert results['host0']['processes'] == results['host1']['processes'] == 2
  params = {name: np.load(out) for name, (_, _, out) in runs.items()}
  single = params['single']
  assert np.abs(single).sum() > 0
  # Both hosts hold the same replicated state, and it is the one-process result, bit for bit.
  np.testing.assert_array_equal(params['host0'], params['host1'])
  np.testing.assert_array_equal(params['host0'], single)
  assert results['host0']['loss'] == results['single']['loss']


def read_tail(log, chars: int = 3000) -> str:
  log.flush()
  log.seek(0)
  return log.read()[-chars:]
