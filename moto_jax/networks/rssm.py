"""Recurrent state-space model with an ensemble of prior heads (ALGORITHM.md Sec. 1).

The state is a dict `{'deter': [N, D], 'stoch': [N, G, C]}`; the feature is
`z = concat(deter, flatten(stoch))`, [N, D + G * C].

* `RSSM.core`: `h_t = GRU(h_{t-1}, MLP(concat(s_{t-1}, a_{t-1})))`, layer-normed GRU (DreamerV2).
* `RSSM.prior_logits`: M heads on `h`, member axis 0: [M, N, G, C].
* `RSSM.posterior_logits`: `q(s_t | h_t, e_t)`: [N, G, C].

Flax modules hold one step each; `observe` and `imagine` are one `lax.scan` each over the
module's `apply`, with explicit keys (no Flax rng streams), so they are plain pure functions.
Logits are normalised log-probabilities with the uniform mix `unimix` already applied.
"""

from typing import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from moto_jax.networks import layers
from moto_jax.xla_cpu import data_parallel

State = dict  # {'deter': [..., D], 'stoch': [..., G, C]}


class GRUCell(nn.Module):
  """Layer-normed GRU of DreamerV2: (h [..., D], x [..., I]) -> h' [..., D]."""

  size: int

  @nn.compact
  def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
    parts = nn.Dense(3 * self.size, use_bias=False, name='dense')(jnp.concatenate([x, h], -1))
    parts = nn.LayerNorm(name='norm')(parts)
    reset, cand, update = jnp.split(parts, 3, axis=-1)
    reset = jax.nn.sigmoid(reset)
    cand = jnp.tanh(reset * cand)
    update = jax.nn.sigmoid(update - 1.0)
    return update * cand + (1.0 - update) * h


class LogitsHead(nn.Module):
  """MLP with one hidden layer to logits [..., G, C]."""

  hidden: int
  groups: int
  classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = layers.MLP(self.hidden, 1, out=self.groups * self.classes, name='mlp')(x)
    return x.reshape(x.shape[:-1] + (self.groups, self.classes))


class RSSM(nn.Module):
  """One-step pieces of the ensembled RSSM. Sizes: D=deter, G=groups, C=classes, M=ensemble."""

  deter: int = 200
  hidden: int = 200
  groups: int = 32
  classes: int = 32
  ensemble: int = 7
  unimix: float = 0.01

  def setup(self):
    self.img_in = layers.MLP(self.hidden, 1)
    self.gru = GRUCell(self.deter)
    # Ensemble: parameters stacked on axis 0, each member initialised from its own key.
    ensemble = nn.vmap(
      LogitsHead,
      variable_axes={'params': 0},
      split_rngs={'params': True},
      in_axes=None,
      out_axes=0,
      axis_size=self.ensemble,
    )
    self.prior = ensemble(self.hidden, self.groups, self.classes)
    self.post = LogitsHead(self.hidden, self.groups, self.classes)

  def core(self, deter: jax.Array, stoch: jax.Array, action: jax.Array) -> jax.Array:
    """(h [N, D], s [N, G, C], a [N, A]) -> h' [N, D]."""
    x = self.img_in(jnp.concatenate([layers.flatten_trailing(stoch, 2), action], -1))
    return self.gru(deter, x)

  def prior_logits(self, deter: jax.Array) -> jax.Array:
    """h [..., D] -> logits of every prior head [M, ..., G, C]."""
    return layers.unimix_logits(self.prior(deter), self.unimix)

  def posterior_logits(self, deter: jax.Array, embed: jax.Array) -> jax.Array:
    """(h [..., D], e [..., E]) -> posterior logits [..., G, C]."""
    return layers.unimix_logits(self.post(jnp.concatenate([deter, embed], -1)), self.unimix)

  def __call__(self, deter, stoch, action, embed):
    """Touches every parameter (for `init`)."""
    deter = self.core(deter, stoch, action)
    return self.prior_logits(deter), self.posterior_logits(deter, embed)


def initial_state(rssm: RSSM, batch: int) -> State:
  """Zero state of `batch` rows."""
  return {
    'deter': jnp.zeros((batch, rssm.deter), jnp.float32),
    'stoch': jnp.zeros((batch, rssm.groups, rssm.classes), jnp.float32),
  }


def feature(state: State) -> jax.Array:
  """z = concat(h, flatten(s)): [..., D + G * C]."""
  return jnp.concatenate([state['deter'], layers.flatten_trailing(state['stoch'], 2)], -1)


def _gumbel(key: jax.Array | None, shape: tuple) -> jax.Array | None:
  """The Gumbel noise of a sample of `shape` [..., G, C] (key None: None, the mode)."""
  return None if key is None else jax.random.gumbel(key, shape, jnp.float32)


def _sample(gumbel: jax.Array | None, logits: jax.Array) -> jax.Array:
  if gumbel is None:
    return layers.straight_through_mode(logits)
  return layers.straight_through_given(gumbel, logits)


def obs_step(
  rssm: RSSM, params, state: State, action: jax.Array, embed: jax.Array, is_first: jax.Array, key: jax.Array | None
) -> tuple[State, jax.Array]:
  """One posterior step. The state and action are zeroed where `is_first` (bool [N]).

  Args: state [N], action a_t [N, A] (the action that led to this observation), embed [N, E].
  key None takes the mode instead of a sample. Returns (state, posterior logits [N, G, C]).
  """
  return _obs_step(rssm, params, state, action, embed, is_first, _gumbel(key, state['stoch'].shape))


def _obs_step(rssm, params, state, action, embed, is_first, gumbel):
  chex.assert_rank([action, embed, is_first], [2, 2, 1])
  keep = 1.0 - is_first.astype(jnp.float32)[:, None]
  deter = state['deter'] * keep
  stoch = state['stoch'] * keep[:, :, None]
  action = action * keep
  variables = {'params': params}
  deter = rssm.apply(variables, deter, stoch, action, method=RSSM.core)
  logits = rssm.apply(variables, deter, embed, method=RSSM.posterior_logits)
  return {'deter': deter, 'stoch': _sample(gumbel, logits)}, logits


def img_step(
  rssm: RSSM, params, state: State, action: jax.Array, key: jax.Array | None, member: jax.Array
) -> tuple[State, jax.Array]:
  """One prior step, s' drawn from head `member` (int [N]).

  Returns (state', logits of every head [M, N, G, C]) (the latter for the penalty of Eq. 2).
  """
  return _img_step(rssm, params, state, action, _gumbel(key, state['stoch'].shape), member)


def _img_step(rssm, params, state, action, gumbel, member):
  chex.assert_rank([action, member], [2, 1])
  variables = {'params': params}
  deter = rssm.apply(variables, state['deter'], state['stoch'], action, method=RSSM.core)
  all_logits = rssm.apply(variables, deter, method=RSSM.prior_logits)
  logits = layers.select_member(all_logits, member)
  return {'deter': deter, 'stoch': _sample(gumbel, logits)}, all_logits


def observe(
  rssm: RSSM,
  params,
  embed: jax.Array,
  action: jax.Array,
  is_first: jax.Array,
  key: jax.Array | None,
  state: State | None = None,
) -> dict:
  """Posterior over a sequence in one `lax.scan`, starting from `state` (zeros by default).

  Args: embed [B, T, E], action [B, T, A], is_first bool [B, T].
  Returns {'deter': [B, T, D], 'stoch': [B, T, G, C], 'logits': [B, T, G, C]}.
  Step t samples with the Gumbel noise of `split(key, T)[t]`, drawn for all rows before the scan;
  under a data-parallel mesh every device scans its own rows (`data_parallel.rows_per_device`).
  """
  b, t = is_first.shape
  chex.assert_shape(embed, (b, t, None))
  chex.assert_shape(action, (b, t, None))
  if state is None:
    state = initial_state(rssm, b)
  xs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (embed, action, is_first))
  gumbel = None
  if key is not None:
    shape = (b, rssm.groups, rssm.classes)
    gumbel = jax.vmap(lambda k: _gumbel(k, shape))(jax.random.split(key, t))  # [T, B, G, C]

  def scan(params, state, xs, gumbel):
    def step(carry, inputs):
      (e, a, first), g = inputs
      carry, logits = _obs_step(rssm, params, carry, a, e, first, g)
      return carry, {**carry, 'logits': logits}

    return jax.lax.scan(step, state, (xs, gumbel))[1]

  out = data_parallel.rows_per_device(scan, (None, 0, 1, 1), 1)(params, state, xs, gumbel)
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)


def imagine(
  rssm: RSSM, params, start: State, policy: Callable, policy_params, horizon: int, key: jax.Array, action_dim: int
) -> dict:
  """Prior rollout of `horizon` steps in one `lax.scan` (ALGORITHM.md Sec. 3), time-major.

  At every step `a_k = policy(policy_params, z_k, noise_k)` with standard-normal noise_k
  [N, action_dim] (a reparameterised sample), h_{k+1} = GRU(...), and s_{k+1} is sampled from a
  prior head drawn uniformly at random for every row and step. The final action `a_H` is drawn
  after the scan, for bootstrapping. All noise is drawn for all rows before the scan; under a
  data-parallel mesh every device scans its own rows (`data_parallel.rows_per_device`).

  Args: start state with rows [N]. Returns
    {'deter': [H+1, N, D], 'stoch': [H+1, N, G, C], 'feat': [H+1, N, F], 'action': [H+1, N, A],
     'disagreement': [H, N]} where disagreement[k] = u(z_k, a_k) of Eq. 2.
  """
  n = start['deter'].shape[0]

  def draw(k):
    k_act, k_member, k_sample = jax.random.split(k, 3)
    return (
      jax.random.normal(k_act, (n, action_dim)),
      jax.random.randint(k_member, (n,), 0, rssm.ensemble),
      _gumbel(k_sample, (n, rssm.groups, rssm.classes)),
    )

  key, k_last = jax.random.split(key)
  noise = jax.vmap(draw)(jax.random.split(key, horizon))  # each [H, N, ...]

  def scan(params, policy_params, start, noise):
    def step(state, inputs):
      act_noise, member, gumbel = inputs
      action = policy(policy_params, feature(state), act_noise)
      nxt, all_logits = _img_step(rssm, params, state, action, gumbel, member)
      u = layers.ensemble_disagreement(all_logits)  # Eq. 2
      return nxt, {'state': state, 'action': action, 'disagreement': u}

    return jax.lax.scan(step, start, noise)

  per_device = data_parallel.rows_per_device(scan, (None, None, 0, 1), (0, 1))
  last, out = per_device(params, policy_params, start, noise)
  states = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], 0), out['state'], last)
  feat = feature(states)
  last_action = policy(policy_params, feat[-1], jax.random.normal(k_last, (n, action_dim)))
  action = jnp.concatenate([out['action'], last_action[None]], 0)
  return {**states, 'feat': feat, 'action': action, 'disagreement': out['disagreement']}
