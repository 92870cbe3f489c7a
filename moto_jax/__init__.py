"""moto_jax: MOTO (model-based offline pre-training and online fine-tuning from pixels) in JAX.

`moto_jax.Policy.load(workdir)` deploys a trained policy (moto_jax/policy.py).
"""


def __getattr__(name):
  if name == 'Policy':  # imported on first use: `import moto_jax` stays light
    from moto_jax.policy import Policy

    return Policy
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
