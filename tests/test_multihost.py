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


# --- the whole main job as 2 processes --------------------------------------------------------------

MAIN_ARGS = (
  '--config=configs/metaworld.py:drawer-open,debug',
  '--config.train.env_steps=40',  # 4 episodes of 10 steps: 2 units of one episode per process
  '--config.train.eval_episodes=2',  # one start seed per process
  '--config.train.eval_envs=1',
)


def run_pair(workdir, cache, faults=(None, None), timeout=600) -> list[int]:
  """`launch.main --multihost` as processes 0 and 1 on `workdir`; `faults[p]` is process p's
  MOTO_FAULT. When one process exits with an error or a signal, the other is killed too, as a
  cluster's scheduler ends a job whose task died. Returns the exit codes."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='true', MUJOCO_GL='egl')
  for k in ('XLA_FLAGS', 'MOTO_FAULT'):
    env.pop(k, None)
  port = str(free_port())
  procs, logs = [], []
  try:
    for p in range(2):
      logs.append(open(os.path.join(workdir + f'.process{p}.log'), 'a+'))
      cmd = [
        sys.executable,
        '-m',
        'launch.main',
        *MAIN_ARGS,
        f'--workdir={workdir}',
        f'--config.data.cache_dir={cache}',
      ]
      cmd += ['--multihost', f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={p}']
      penv = dict(env, MOTO_FAULT=faults[p]) if faults[p] else env
      procs.append(subprocess.Popen(cmd, cwd=ROOT, env=penv, stdout=logs[p], stderr=subprocess.STDOUT, text=True))
    deadline = time.time() + timeout
    while any(p.poll() is None for p in procs):
      if any(p.poll() not in (None, 0) for p in procs):
        for p in procs:
          if p.poll() is None:
            p.kill()
      assert time.time() < deadline, 'timeout: ' + ' | '.join(read_tail(log) for log in logs)
      time.sleep(0.2)
    return [p.returncode for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for log in logs:
      log.close()


@pytest.mark.slow
@pytest.mark.integration
def test_main_job_across_two_processes_writes_once_and_resumes(tmp_path):
  """The debug main job as 2 processes (each with its environments and episodes, one global batch):
  one checkpoint folder, one metrics log, the episodes of both processes; every evaluation counts both
  processes' episodes; a SIGTERM to process 1 after an episode, and a kill -9 of process 0 inside a
  checkpoint save (then of process 1, as a scheduler would), each followed by the same two commands,
  give the uninterrupted run's files exactly."""
  from benchmarks import faults
  from moto_jax.training.logger import read_metrics

  cache = tmp_path / 'data'
  ref = str(tmp_path / 'reference')
  assert run_pair(ref, cache) == [0, 0], read_tail(open(ref + '.process0.log'))
  assert sorted(os.listdir(os.path.join(ref, 'episodes'))) == [f'episode_{i:06d}.npz' for i in range(4)]
  summary = json.load(open(os.path.join(ref, 'summary.json')))
  assert (summary['episodes'], summary['env_steps'], summary['phase']) == (4, 40, 'done')
  assert summary['provenance']['machine']['process_count'] == 2
  records = read_metrics(ref)
  evals = [r for r in records if r['phase'] == 'eval']
  assert [r['env_steps'] for r in evals] == [0, 20, 40]  # the offline end, then after each unit
  assert all(r['eval/episodes'] == 2 for r in evals)  # one episode from each process
  assert all('diag/exploit_gap' in r and 'bound/bound' in r for r in evals)  # process 0's diagnostics
  assert sorted(map(int, os.listdir(os.path.join(ref, 'checkpoints')))) == [4, 26, 48]  # grad + env steps
  episodes = [r for r in records if 'episode/return' in r]
  assert [r['step'] for r in episodes] == [10, 20, 30, 40]
  reference = faults.load_final(ref)
  assert not faults.invariants(ref)

  trials = {
    # Process 1 asks to stop: both stop at the same point, checkpoint and exit 0.
    'term1': ((None, 'episode=2:TERM'), lambda codes: codes == [0, 0]),
    # Process 0 dies inside the save after the 4th offline step; process 1 aborts (JAX's coordination
    # service sees its peer gone) or is killed.
    'kill0': (('checkpoint=4:KILL', None), lambda codes: codes[0] == -9 and codes[1] != 0),
  }
  for name, (fault, expected) in trials.items():
    work = str(tmp_path / name)
    got = run_pair(work, cache, fault)
    assert expected(got), (name, got, read_tail(open(work + '.process0.log')), read_tail(open(work + '.process1.log')))
    assert run_pair(work, cache) == [0, 0], (name, read_tail(open(work + '.process0.log')))
    assert faults.first_difference(reference, faults.load_final(work)) is None, name
    assert not faults.invariants(work), name
