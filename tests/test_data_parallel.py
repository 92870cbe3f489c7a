"""The scans run per device under a data-parallel mesh (`xla_cpu.data_parallel`): the same values
and gradients as on one device, and no all-reduce inside a loop of their compiled gradient.

Runs in a subprocess, because the number of virtual CPU devices is fixed when JAX starts.
"""

import textwrap

from conftest import run_with_cpu_devices

SCRIPT = textwrap.dedent("""
    import json, re
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    jax.config.update('jax_disable_most_optimizations', True)
    from conftest import ACTION_DIM, debug_config, synthetic_batch
    from moto_jax.agent.sharding import default_mesh, under_mesh
    from moto_jax.networks.world_model import make_networks

    assert jax.device_count() == 2, jax.devices()
    nets = make_networks(debug_config(), ACTION_DIM)
    params = nets.init(jax.random.key(0))
    batch = synthetic_batch(0, 4, 6)
    n = 8
    start = {'deter': jax.random.normal(jax.random.key(2), (n, nets.rssm.deter)),
             'stoch': jax.nn.one_hot(jax.random.randint(jax.random.key(1), (n, nets.rssm.groups), 0,
                                                        nets.rssm.classes), nets.rssm.classes)}

    def loss(wm, actor, start, batch):
      embed = nets.encode(wm, batch['image'])
      post = nets.observe(wm, embed, batch['action'], batch['is_first'], jax.random.key(3))
      traj = nets.imagine(wm, start, actor, 3, jax.random.key(4))
      return (jnp.mean(post['feat'] ** 2) + jnp.mean(post['logits'][..., 0])
              + jnp.mean(traj['feat'] ** 2) + jnp.mean(traj['disagreement']) + jnp.mean(traj['action']))

    fn = jax.value_and_grad(loss, argnums=(0, 1))
    args = (params['wm'], params['actor'], start, batch)
    ref_loss, ref_grads = jax.jit(fn)(*args)                  # no mesh: plain scans, one device
    mesh = default_mesh()
    rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    sharded = jax.jit(under_mesh(fn, mesh), in_shardings=(rep, rep, data, data), out_shardings=rep)
    compiled = sharded.lower(*args).compile()
    got_loss, got_grads = compiled(*args)
    # Every gradient leaf against its own scale.
    worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / (float(np.max(np.abs(np.asarray(a)))) + 1e-8)
                for a, b in zip(jax.tree.leaves(ref_grads), jax.tree.leaves(got_grads)))
    moved = min(float(np.max(np.abs(np.asarray(a)))) for a in jax.tree.leaves(ref_grads[0]['rssm']))

    # The optimized HLO's computations; those a while loop runs as its body, and the all-reduces in them.
    hlo = compiled.as_text()
    comps = dict(re.findall(r'^(?:ENTRY )?%?([\\w.-]+) [^\\n]*\\{\\n(.*?)^\\}', hlo, re.M | re.S))
    bodies = set(re.findall(r'body=%?([\\w.-]+)', hlo))
    def calls(name, seen):
      if name in seen or name not in comps:
        return
      seen.add(name)
      for callees in re.findall(r'(?:to_apply|calls|body|condition|branch_computations)=(\\{[^}]*\\}|%?[\\w.-]+)',
                                comps[name]):
        for callee in re.findall(r'[\\w.-]+', callees):
          calls(callee, seen)
    in_loops = set()
    for body in bodies:
      calls(body, in_loops)
    loop_reduces = sum(comps[c].count('all-reduce(') for c in in_loops)
    all_reduces = sum(body.count('all-reduce(') for body in comps.values())
    print(json.dumps({'loss': [float(ref_loss), float(got_loss)], 'worst': worst, 'moved': moved,
                      'loops': len(bodies), 'bodies_found': bodies <= comps.keys(),
                      'loop_all_reduces': loop_reduces, 'all_reduces': all_reduces}))
""")


def test_scans_per_device_match_one_device():
  result = run_with_cpu_devices(SCRIPT, 2)
  one, two = result['loss']
  assert abs(one - two) < 1e-5 * abs(one), result
  assert result['moved'] > 0 and result['worst'] < 1e-4, result  # every leaf, relative to its size
  assert result['loops'] >= 2 and result['bodies_found'], result  # the scans are loops (fwd and bwd)
  assert result['all_reduces'] > 0, result  # the parameters' gradients are summed ...
  assert result['loop_all_reduces'] == 0, result  # ... but not inside any loop
