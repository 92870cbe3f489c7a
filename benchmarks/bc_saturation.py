"""Behaviour cloning (Eq. 10) on saturated demonstrations: how the clip margin `bc_eps` changes the fit.

A tanh-Gaussian actor (64 x 2 MLP) is fitted by BC alone with Adam at the actor's learning rate on
512 synthetic pairs shaped like scripted MetaWorld demos: dims 0, 1 smooth in (-1, 1), dim 2 a +-1
switch (saturated, like the demos' y in 80 % of steps), dim 3 always +1 (the gripper). Prints the
mean |tanh(mean) - target| per dimension after the given number of steps, for each margin.

  python benchmarks/bc_saturation.py [--steps=1500] [--lr=8e-5]
"""

import os as _os
import sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))   # the repository root
import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from moto_jax.networks.actor_critic import Actor


def fit(eps: float, steps: int, lr: float, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(512, 32)).astype(np.float32)
  w = rng.normal(size=(32, 2)).astype(np.float32) / np.sqrt(32)
  target = np.concatenate([np.tanh(x @ w), np.sign(x[:, :1]), np.ones((512, 1))], 1).astype(np.float32)
  actor = Actor(4, units=64, layers=2)
  params = actor.init(jax.random.key(seed), x[:1])['params']
  opt = optax.adam(lr)
  loss = lambda p: -jnp.mean(actor.apply({'params': p}, x).log_prob(jnp.asarray(target), eps))

  @jax.jit
  def run(params):
    def step(carry, _):
      p, s = carry
      updates, s = opt.update(jax.grad(loss)(p), s, p)
      return (optax.apply_updates(p, updates), s), None
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params

  mode = actor.apply({'params': run(params)}, x).mode()
  return np.abs(np.asarray(mode) - target).mean(0)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--steps', type=int, default=1500)
  p.add_argument('--lr', type=float, default=8e-5)
  args = p.parse_args()
  print(f'BC fit after {args.steps} Adam steps at lr {args.lr:g}: mean |mode - target| per dimension')
  print('| bc_eps | atanh(1 - eps) | dim 0 (smooth) | dim 1 (smooth) | dim 2 (+-1 switch) | dim 3 (always +1) |')
  print('|---|---|---|---|---|---|')
  for eps in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1):
    err = fit(eps, args.steps, args.lr)
    print(f'| {eps:g} | {np.arctanh(1 - eps):.2f} | ' + ' | '.join(f'{e:.3f}' for e in err) + ' |')


if __name__ == '__main__':
  main()
