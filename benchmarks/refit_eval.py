r"""Applies the end-of-offline refit (agent/refit.py) with N steps to a checkpoint, then evaluates it.

  XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/refit_eval.py WORKDIR STEP N

Uses the loop's own refit key and evaluation seeds and key, so on the offline-end checkpoint of a
run without a refit it prints what the job with `train.refit_steps=N` would print at its offline
end (20 episodes, 10 environments in lock step).
"""
import os
import sys
import time
os.environ.setdefault('MUJOCO_GL', 'egl')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository root
import jax  # noqa: E402
from moto_jax import agent
from moto_jax.agent import refit as refit_lib
from moto_jax.data import episodes as ep_lib
from moto_jax.data.rollout import episode_seed  # noqa: E402
from moto_jax.suites import make_env
from moto_jax.training import evaluation, offline_data, restore
from moto_jax.training import streams
wd, step, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = restore.load_config(wd)
envs = [make_env(config) for _ in range(10)]
config, state, counters, step, parts = restore.load_run(wd, step, agent.build(config, int(envs[0].action_space.shape[0])))
config = config.unlock(); config.train.refit_steps = n
eps = [ep_lib.load_episode(f) for f in ep_lib.episode_files(offline_data.resolve(config, log=lambda *a: None))]
t = time.time()
state, m = refit_lib.make_refit_fn(parts, steps=n)(state, refit_lib.episode_arrays(eps), streams.key(jax.random.PRNGKey(config.seed), streams.REFIT_OFFLINE))
jax.block_until_ready(m); print(f'refit {n} steps {time.time()-t:.0f} s bc_loglik {float(m["actor/bc_loglik"]):.2f}', flush=True)
seeds = [episode_seed(config.seed, streams.EVAL_STARTS + k) for k in range(20)]
s, _ = evaluation.evaluate(evaluation.AgentActor(parts), envs, agent.acting_params(state), seeds, streams.key(jax.random.PRNGKey(config.seed), streams.EVAL))
print(f'checkpoint {step} + refit {n}: success {s["eval/success_rate"]:.2f} return {s["eval/return"]:.1f}', flush=True)
