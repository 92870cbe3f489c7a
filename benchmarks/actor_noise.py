r"""How much does evaluation success move when only the actor trains, on a frozen world model and fixed data?

  XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/actor_noise.py WORKDIR STEP \
      [--rounds=5] [--steps=100] [--chains=1e-3:0,1e-3:0.99]

From a checkpoint (e.g. a run's offline-end one), for each chain LR:EMA (the actor's learning rate
and `agent.actor_ema`, the decay of the averaged actor that acts): `rounds` rounds of `steps` refit
steps (agent/refit.py: actor-critic steps over the run's offline episodes, world model frozen),
each chain from the checkpoint. After each round it evaluates the acting policy (the loop's 20
evaluation seeds and key); EMA 0 makes that the trained actor itself.

If success moves by tens of points from round to round here, where neither the world model nor the
data changes, the online dip is (at least partly) the actor's own optimisation noise, not online data.
"""
import argparse
import os
import sys
import time
os.environ.setdefault('MUJOCO_GL', 'egl')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository root
import jax  # noqa: E402
import numpy as np  # noqa: E402
from moto_jax import agent  # noqa: E402
from moto_jax.agent import refit as refit_lib  # noqa: E402
from moto_jax.data import episodes as ep_lib  # noqa: E402
from moto_jax.data.rollout import episode_seed  # noqa: E402
from moto_jax.suites import make_env  # noqa: E402
from moto_jax.training import evaluation, offline_data, restore  # noqa: E402
from moto_jax.training import streams  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('workdir')
p.add_argument('step', type=int)
p.add_argument('--rounds', type=int, default=5)
p.add_argument('--steps', type=int, default=100)
p.add_argument('--chains', default='1e-3:0,1e-3:0.99')
a = p.parse_args()

config = restore.load_config(a.workdir)
envs = [make_env(config) for _ in range(10)]
config, state0, _, step, parts = restore.load_run(a.workdir, a.step, agent.build(config, int(envs[0].action_space.shape[0])))
mesh = agent.default_mesh()
eps = [ep_lib.load_episode(f) for f in ep_lib.episode_files(offline_data.resolve(config, log=lambda *x: None))]
arrays = refit_lib.episode_arrays(eps)
seeds = [episode_seed(config.seed, streams.EVAL_STARTS + k) for k in range(20)]
actor = evaluation.AgentActor(parts)
eval_key = streams.key(jax.random.PRNGKey(config.seed), streams.EVAL)


def evaluate(params):
  s, _ = evaluation.evaluate(actor, envs, params, seeds, eval_key)
  return s['eval/success_rate'], s['eval/return']


sr, ret = evaluate(agent.acting_params(state0))
print(f'checkpoint {step}: success {sr:.2f} return {ret:.1f}', flush=True)
for chain in a.chains.split(','):
  lr, ema = (float(x) for x in chain.split(':'))
  c = config.unlock()
  c.agent.actor_lr, c.agent.actor_ema = lr, ema
  fn = refit_lib.make_refit_fn(agent.build(c, parts.action_dim), mesh=mesh, steps=a.steps)
  state = agent.replicate(state0, mesh)
  rows = []
  for r in range(1, a.rounds + 1):
    t = time.time()
    state, m = fn(state, arrays, jax.random.fold_in(jax.random.PRNGKey(config.seed), 5_000_000 + r))
    jax.block_until_ready(m)
    sr, ret = evaluate(agent.acting_params(state))
    line = (f'lr {lr:g} ema {ema:g} round {r} ({r * a.steps} steps, refit {time.time() - t:.0f} s): '
            f'acting policy success {sr:.2f} return {ret:.1f} bc_loglik {float(m["actor/bc_loglik"]):.2f}')
    rows.append(sr)
    print(line, flush=True)
  print(f'lr {lr:g} ema {ema:g}: success mean {np.mean(rows):.2f} min {min(rows):.2f} max {max(rows):.2f} '
        f'over {a.rounds} rounds', flush=True)
