"""Where one update's time goes: each part's forward + backward, jitted alone, timed and costed by XLA.

Parts (at the preset's sizes, batch B x T): encoder, decoder (with the image loss), the posterior
scan (observe), the prior ensemble heads with the KL, the whole world-model loss, the actor loss
(imagination scan + value expansion + BC), the critic loss, the full update, and the host side
(sampling a batch from an episode store of the dataset's size and moving it to the devices). Each part
runs on the default mesh, batch axis sharded, the way the update runs it. Printed side by side with
the machine's matmul roofline measured in the same run.

  python -m benchmarks.profile_parts --preset=small [--batch=16 --seq=32] [--steps=5] [--set FIELD=VALUE]
      [--parts=actor,full]     # only these parts (name prefixes)
      [--trace=20]             # also the 20 slowest XLA ops of each part, from a jax.profiler trace,
                               # the number of op runs with op time by time per run, and all ops'
                               # time summed by part, pass and kind
      [--hlo=update.hlo]       # the full update's compiled XLA program, to look up a traced op

The per-part times do not add up to the full update exactly: XLA fuses across parts in the full step.
"""

import argparse
import time

from benchmarks import process_setup  # noqa: E402

if __name__ == '__main__':
  process_setup.start()

import jax
import jax.numpy as jnp

from benchmarks import xla_trace  # noqa: E402
from benchmarks.train_step import ACTION_DIM, flops_of, host_seconds, make_batch, roofline_gflops, roofline_size  # noqa: E402
from configs import metaworld  # noqa: E402
from moto_jax import agent  # noqa: E402
from moto_jax.agent import cloning  # noqa: E402
from moto_jax.agent.sharding import under_mesh  # noqa: E402
from moto_jax.agent.world_model_loss import kl_balance  # noqa: E402
from moto_jax.networks import conv, layers  # noqa: E402
from moto_jax.training import config_check  # noqa: E402
from moto_jax.xla_cpu import allocator  # noqa: E402


def timed(call, steps: int, hlo_text: str, trace: int = 0, name: str = '') -> float:
  """Seconds per `call()` (one call of a compiled program, returning its outputs) after a warm-up;
  with `trace`, prints the program's `trace` slowest ops, its op runs by time per run, and its op
  time by part and kind."""
  jax.block_until_ready(call())
  start = time.perf_counter()
  for _ in range(steps):
    out = call()
  jax.block_until_ready(out)
  seconds = (time.perf_counter() - start) / steps
  if trace:
    rows = xla_trace.top_ops(lambda: jax.block_until_ready(call()), hlo_text, steps, None)
    xla_trace.print_top_ops(name, rows[:trace], seconds * 1e3)
    xla_trace.print_groups(name, rows)
  return seconds


def time_fn(fn, args, steps: int, trace: int = 0, name: str = '') -> tuple[float, float, float]:
  """(compile s, s per call, GFLOP per call) of a jitted fn; with `trace`, prints its slowest ops."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  seconds = timed(lambda: compiled(*args), steps, compiled.as_text(), trace, name)
  return compile_s, seconds, flops_of(compiled) / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='small')
  parser.add_argument('--batch', type=int, default=0, help='0: the preset batch size')
  parser.add_argument('--seq', type=int, default=0, help='0: the preset sequence length')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument(
    '--parts',
    default='',
    help="only the parts whose names start with these, comma-separated (e.g. 'actor,full'; default: all)",
  )
  parser.add_argument(
    '--trace',
    type=int,
    default=0,
    metavar='N',
    help='print the N slowest XLA ops of each timed part (jax.profiler trace; 0: off)',
  )
  parser.add_argument(
    '--hlo',
    default='',
    metavar='PATH',
    help="write the full update's compiled XLA program (text) here, to look up the ops the trace names",
  )
  parser.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='config override, e.g. --set model.decoder.impl=phases (repeatable)',
  )
  args = parser.parse_args()
  config = metaworld.get_config(f'drawer-open,{args.preset}').unlock()
  for item in args.set:
    config_check.override(config, item)
  b, t = args.batch or config.train.batch_size, args.seq or config.train.seq_len
  mesh = agent.default_mesh()
  agent_parts = agent.build(config, ACTION_DIM)
  nets = agent_parts.nets
  state = agent.create_train_state(agent_parts, jax.random.key(0), mesh=mesh)
  params = state.params
  wm = params['wm']
  batch = agent.shard_batch(make_batch(b, t), mesh)
  key = jax.random.key(1)
  roof = roofline_gflops(roofline_size())
  print(allocator.status())
  print(
    f'jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device(s); preset {args.preset}, '
    f'batch {b} x {t}; matmul roofline {roof:.1f} GFLOP/s (one XLA device, all cores)',
    flush=True,
  )

  # Intermediate inputs, computed once.
  embed = jax.jit(nets.encode)(wm, batch['image'])
  post = jax.jit(lambda w, e: nets.observe(w, e, batch['action'], batch['is_first'], key))(wm, embed)
  feat = post['feat']
  start = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), {k: post[k] for k in ('deter', 'stoch')})
  pairs = cloning.real_pairs(feat, batch)

  # Every array is an argument (closed-over arrays would be folded into the program as constants).
  def enc(w, image):
    return jnp.mean(nets.encode(w, image) ** 2)

  def dec(w, f, image):
    return jnp.mean((nets.decode(w, f) - conv.preprocess(image)) ** 2)

  def obs(w, e, action, is_first, k):
    return jnp.mean(nets.observe(w, e, action, is_first, k)['feat'] ** 2)

  def kl(w, deter, logits, k):
    prior_all = nets.prior_logits(w, deter)
    member = jax.random.randint(k, deter.shape[:2], 0, nets.rssm.ensemble)
    return jnp.mean(kl_balance(logits, layers.select_member(prior_all, member), 0.8, 0.0)[0])

  def wm_loss(w, bt, k):
    return agent_parts.losses.world_model(nets, w, bt, k)[0]

  def actor(a, w, c, st, pr, k):
    return agent_parts.losses.actor(a, nets, w, c, st, pr, k)

  def critic(c, tc, a, ro, pr, k):
    return agent_parts.losses.critic(c, nets, tc, a, ro, pr, k)[0]

  def grad(f):  # traced under the mesh, as the update is (its scans run per device)
    return jax.jit(under_mesh(jax.grad(f), mesh))

  rollout = jax.jit(lambda *xs: actor(*xs)[1][1])(params['actor'], wm, params['critic'], start, pairs, key)
  parts = [
    ('encoder', grad(enc), (wm, batch['image'])),
    ('decoder + image loss', grad(dec), (wm, feat, batch['image'])),
    ('posterior scan (observe)', grad(obs), (wm, embed, batch['action'], batch['is_first'], key)),
    ('prior heads + KL', grad(kl), (wm, post['deter'], post['logits'], key)),
    ('world-model loss (all)', grad(wm_loss), (wm, batch, key)),
    (
      'actor loss (imagine + BC)',
      grad(lambda *xs: actor(*xs)[0]),
      (params['actor'], wm, params['critic'], start, pairs, key),
    ),
    ('critic loss', grad(critic), (params['critic'], state.target_critic, params['actor'], rollout, pairs, key)),
  ]
  wanted = [w for w in args.parts.split(',') if w]
  keep = lambda name: not wanted or any(name.startswith(w) for w in wanted)
  rows = []
  for name, fn, fargs in (p for p in parts if keep(p[0])):
    c, s, g = time_fn(fn, fargs, args.steps, args.trace, name)
    rows.append((name, c, s, g))
    print(f'{name:28s} compile {c:5.1f} s  {s * 1e3:8.1f} ms  {g:7.2f} GFLOP  {g / s:6.1f} GFLOP/s', flush=True)
  full_s = float('nan')  # share column: without the full update, none
  if keep('full update'):
    full = agent.make_update_fn(agent_parts, mesh)
    start_t = time.perf_counter()
    compiled = full.lower(state, batch, key).compile()
    c = time.perf_counter() - start_t
    if args.hlo:
      with open(args.hlo, 'w') as f:
        f.write(compiled.as_text())
      print(f"full update's compiled program: {args.hlo}", flush=True)

    def call():  # the state is donated: thread it through
      nonlocal state
      state, metrics = compiled(state, batch, key)
      return metrics

    s = timed(call, args.steps, compiled.as_text(), args.trace, 'full update')
    g = flops_of(compiled) / 1e9
    rows.append(('full update', c, s, g))
    print(
      f'{"full update":28s} compile {c:5.1f} s  {s * 1e3:8.1f} ms  {g:7.2f} GFLOP  {g / s:6.1f} GFLOP/s', flush=True
    )
    full_s = s
  host = host_seconds(config, b, t, args.steps * 4)

  # The roofline matmul runs on one XLA device, whose intra-op threads use every core: it is the
  # machine's rate, to which the parts' rates (all devices together) compare directly.
  print('\n| part (forward + backward) | ms | share of full update | GFLOP | GFLOP/s | of roofline |')
  print('|---|---|---|---|---|---|')
  for name, c, s, g in rows:
    print(f'| {name} | {s * 1e3:.1f} | {s / full_s:.0%} | {g:.2f} | {g / s:.1f} | {g / s / roof:.0%} |')
  print(f'| host: sample batch + to devices | {host * 1e3:.1f} | {host / full_s:.0%} | - | - | - |')


if __name__ == '__main__':
  main()
