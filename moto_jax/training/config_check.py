"""Config validation and the workdir's config record.

A bad field fails here, before anything is compiled or collected, with a message
that names the field and its value.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os

import ml_collections

from moto_jax import suites
from moto_jax.errors import UserError

CONFIG_FILE = 'config.json'
# config.json also records where the run was started from (moto_jax/provenance.py); not a config field.
PROVENANCE_KEY = 'provenance'
# The values of model.{encoder,decoder}.impl and model.compute_dtype. Written here rather than
# imported from networks/conv.py and xla_cpu/precision.py, which import jax, and a config is
# checked before jax is; tests/test_precision.py keeps the lists equal to theirs.
CONV_IMPLS = ('auto', 'xla', 'patches', 'phases')
COMPUTE_DTYPES = ('float32', 'bfloat16')


class ConfigError(ValueError, UserError):
  """A config field with a bad value, or a workdir whose config differs."""


def _require(cond: bool, field: str, value, expect: str):
  if not cond:
    raise ConfigError(f'config.{field}={value!r}: {expect}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` naming the first bad field."""
  _require(
    config.domain in suites.names(),
    'domain',
    config.domain,
    'expected a registered suite: ' + ', '.join(f'"{n}"' for n in suites.names()),
  )
  suite = suites.get(config.domain)
  try:
    suite.check_task(config.task)
  except ValueError as e:
    raise ConfigError(f'config.task: {e}') from None
  env, data, model, agent, train = config.env, config.data, config.model, config.agent, config.train
  _require(env.image_size == 64, 'env.image_size', env.image_size, 'the conv encoder/decoder expect 64')
  _require(env.action_repeat >= 1, 'env.action_repeat', env.action_repeat, 'expected >= 1')
  _require(env.episode_length >= 1, 'env.episode_length', env.episode_length, 'expected >= 1')
  _require(
    env.render_quality in ('fast', 'shipped'), 'env.render_quality', env.render_quality, 'expected "fast" or "shipped"'
  )
  try:
    suite.check_config(config)  # the fields only this suite reads
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _require(data.num_episodes >= 1, 'data.num_episodes', data.num_episodes, 'expected >= 1')
  _require(data.subset_episodes >= 0, 'data.subset_episodes', data.subset_episodes, 'expected >= 0 (0 = all)')
  _require(not data.dir or os.path.isdir(os.path.expanduser(data.dir)), 'data.dir', data.dir, 'not a directory')
  _require(
    model.decoder.kind in ('transpose', 'subpixel'),
    'model.decoder.kind',
    model.decoder.kind,
    'expected "transpose" or "subpixel"',
  )
  for part in ('encoder', 'decoder'):
    _require(model[part].impl in CONV_IMPLS, f'model.{part}.impl', model[part].impl, f'expected one of {CONV_IMPLS}')
  _require(
    model.compute_dtype in COMPUTE_DTYPES,
    'model.compute_dtype',
    model.compute_dtype,
    f'expected one of {COMPUTE_DTYPES}',
  )
  _require(
    agent.explore_from in ('sample', 'mode'), 'agent.explore_from', agent.explore_from, 'expected "sample" or "mode"'
  )
  _require(agent.explore_noise >= 0, 'agent.explore_noise', agent.explore_noise, 'expected >= 0')
  for f in ('deter', 'hidden', 'groups', 'classes', 'ensemble'):
    _require(model.rssm[f] >= 1, f'model.rssm.{f}', model.rssm[f], 'expected >= 1')
  _require(0.0 <= model.kl_alpha <= 1.0, 'model.kl_alpha', model.kl_alpha, 'expected a value in [0, 1]')
  _require(0.0 <= model.rssm.unimix < 1.0, 'model.rssm.unimix', model.rssm.unimix, 'expected a value in [0, 1)')
  _require(agent.mode in ('moto', 'bc', 'dreamerv2'), 'agent.mode', agent.mode, 'expected "moto", "bc" or "dreamerv2"')
  _require(
    agent.mode != 'bc' or agent.bc_scale > 0,
    'agent.bc_scale',
    agent.bc_scale,
    'expected > 0 with agent.mode=bc (cloning is all the actor learns from)',
  )
  _require(agent.balance in ('fixed', 'share'), 'agent.balance', agent.balance, 'expected "fixed" or "share"')
  _require(0.0 <= agent.value_share <= 1.0, 'agent.value_share', agent.value_share, 'expected a value in [0, 1]')
  _require(0.0 < agent.bc_final <= 1.0, 'agent.bc_final', agent.bc_final, 'expected a value in (0, 1]')
  _require(agent.bc_decay_updates >= 1, 'agent.bc_decay_updates', agent.bc_decay_updates, 'expected an integer >= 1')
  _require(
    agent.bc_filter in ('none', 'q', 'advantage', 'snippets', 'all'),
    'agent.bc_filter',
    agent.bc_filter,
    'expected "none", "q", "advantage", "snippets" or "all"',
  )
  _require(
    agent.snippet_steps >= 1,
    'agent.snippet_steps',
    agent.snippet_steps,
    'expected an integer >= 1',
  )
  _require(
    agent.bc_filter in ('none', 'all') or agent.mode == 'moto',
    'agent.bc_filter',
    agent.bc_filter,
    f'a critic-weighted cloning term needs a critic-led actor (agent.mode=moto, not {agent.mode!r})',
  )
  _require(agent.horizon >= 0, 'agent.horizon', agent.horizon, 'expected >= 0')
  _require(0.0 < agent.gamma <= 1.0, 'agent.gamma', agent.gamma, 'expected a value in (0, 1]')
  _require(0.0 < agent.tau <= 1.0, 'agent.tau', agent.tau, 'expected a value in (0, 1]')
  _require(agent.penalty_scale >= 0, 'agent.penalty_scale', agent.penalty_scale, 'expected >= 0')
  _require(agent.bc_scale >= 0, 'agent.bc_scale', agent.bc_scale, 'expected >= 0')
  _require(
    agent.actor_steps >= 1 and config.train.seq_len % agent.actor_steps == 0,
    'agent.actor_steps',
    agent.actor_steps,
    f'expected >= 1 and a divisor of train.seq_len={config.train.seq_len}',
  )
  for f in ('lr',):
    _require(model[f] > 0, f'model.{f}', model[f], 'expected > 0')
  for f in ('actor_lr', 'critic_lr'):
    _require(agent[f] > 0, f'agent.{f}', agent[f], 'expected > 0')
  _require(train.batch_size >= 1, 'train.batch_size', train.batch_size, 'expected >= 1')
  _require(
    2 <= train.seq_len <= env.episode_length + 1,
    'train.seq_len',
    train.seq_len,
    f'expected 2 .. env.episode_length + 1 = {env.episode_length + 1}',
  )
  _require(train.offline_steps >= 0, 'train.offline_steps', train.offline_steps, 'expected >= 0')
  _require(train.env_steps >= 0, 'train.env_steps', train.env_steps, 'expected >= 0')
  _require(train.updates_per_episode >= 0, 'train.updates_per_episode', train.updates_per_episode, 'expected >= 0')
  _require(train.eval_every_episodes >= 1, 'train.eval_every_episodes', train.eval_every_episodes, 'expected >= 1')
  _require(train.eval_episodes >= 0, 'train.eval_episodes', train.eval_episodes, 'expected >= 0')
  _require(train.refit_steps >= 0, 'train.refit_steps', train.refit_steps, 'expected >= 0')
  _require(train.online_refit_steps >= 0, 'train.online_refit_steps', train.online_refit_steps, 'expected >= 0')
  _require(train.eval_envs >= 1, 'train.eval_envs', train.eval_envs, 'expected >= 1')
  _require(
    0.0 <= train.online_fraction <= 1.0, 'train.online_fraction', train.online_fraction, 'expected a value in [0, 1]'
  )
  _require(train.log_every >= 1, 'train.log_every', train.log_every, 'expected >= 1')
  _require(train.keep_checkpoints >= 1, 'train.keep_checkpoints', train.keep_checkpoints, 'expected >= 1')
  _require(train.bound_episodes >= 0, 'train.bound_episodes', train.bound_episodes, 'expected >= 0')
  _require(
    1 <= train.bound_starts < env.episode_length,
    'train.bound_starts',
    train.bound_starts,
    f'expected 1 .. env.episode_length - 1 = {env.episode_length - 1}',
  )
  if train.bound_episodes and train.eval_episodes:
    _require(
      train.bound_episodes <= train.eval_episodes,
      'train.bound_episodes',
      train.bound_episodes,
      f'expected at most train.eval_episodes={train.eval_episodes} (the expert runs from their start seeds)',
    )
  if train.bound_episodes:
    _require(
      suite.has_expert(),
      'train.bound_episodes',
      train.bound_episodes,
      f"suite {config.domain!r} has no scripted expert (the bound's reference policy); set 0",
    )
  _require(train.max_nonfinite >= 1, 'train.max_nonfinite', train.max_nonfinite, 'expected >= 1')


def override(config: ml_collections.ConfigDict, item: str, prefix: str = '') -> None:
  """Sets one field from a `FIELD=VALUE` string (a benchmark's `--set`), in place, as the field's
  type: `agent.actor_steps=4`, `agent.mode=dreamerv2`, `train.log_video=False`. `prefix` (e.g.
  'agent') is put before a FIELD without a section. Unknown fields and values that do not parse as
  the field's type raise `ConfigError` naming them."""
  if '=' not in item:
    raise ConfigError(f'{item!r}: expected FIELD=VALUE, e.g. agent.actor_steps=4')
  field, text = item.split('=', 1)
  field = f'{prefix}.{field}' if prefix and '.' not in field else field
  *path, leaf = field.split('.')
  section = config
  for depth, key in enumerate(path + [leaf]):
    if key not in section:
      where = '.'.join(path[:depth]) or 'config'
      close = difflib.get_close_matches(key, list(section.keys()), n=1)
      raise ConfigError(
        f'config.{field}: {where} has no field {key!r}' + (f'; did you mean {close[0]!r}?' if close else '')
      )
    if key != leaf:
      section = section[key]
  old = section[leaf]
  if isinstance(old, str):
    value = text
  else:
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise ConfigError(f'config.{field}={text!r}: expected a {type(old).__name__} like {old!r}') from None
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if old is not None and type(value) is not type(old):
      raise ConfigError(f'config.{field}={text!r}: expected a {type(old).__name__} like {old!r}')
  section[leaf] = value


def to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = v
  return out


# Fields added to the config after runs were recorded without them: a recorded run that lacks one
# resumes without --allow_config_change when the new value keeps what the run did (None: any value,
# the field only adds measurements).
ADDED_FIELDS = {
  'data.subset_episodes': 0,
  'train.bound_episodes': None,
  'train.bound_starts': None,
  'model.compute_dtype': 'float32',
  'agent.balance': 'fixed',
  'agent.value_share': 0.5,
  'agent.bc_filter': 'none',
  'data.bc_segments': False,
  'agent.critic_action_noise': 0.0,
  'agent.bc_final': 1.0,
  'agent.bc_decay_updates': 1000,
  'data.task_order': 'random',
  'env.reward': 'sparse',
  'agent.snippet_steps': 10,
}

# Added fields that only some domains' configs have (a recorded config of another domain stays without them).
ADDED_FIELD_DOMAINS = {'env.reward': ('metaworld',)}


# Fields that choose how a function is computed, not which function: a run may resume with another
# value (the convolution forms of conv.py share parameters and outputs).
COMPUTE_ONLY_FIELDS = ('model.encoder.impl', 'model.decoder.impl')


def config_diff(old: dict, new: dict) -> list[str]:
  """Dotted names of the fields whose values differ (or exist in only one; see `ADDED_FIELDS`),
  leaving out `COMPUTE_ONLY_FIELDS`."""
  a, b = _flatten(old), _flatten(new)

  def added(k):
    return k not in a and k in ADDED_FIELDS and ADDED_FIELDS[k] in (None, b.get(k))

  return sorted(
    k
    for k in set(a) | set(b)
    if a.get(k, '<absent>') != b.get(k, '<absent>') and not added(k) and k not in COMPUTE_ONLY_FIELDS
  )


def record(config: ml_collections.ConfigDict, workdir: str, allow_change: bool = False, write: bool = True) -> None:
  """Writes the config to `workdir/config.json` (with the provenance of the session that writes
  it under `provenance`), or checks it against the one there.

  Raises `ConfigError` listing the differing fields when the workdir holds a run with
  another config, unless `allow_change`. With `write=False` only checks: the main job checks
  first and writes once the run has started (restore included), so a failed start leaves the
  workdir's record as it was.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  new = to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    old.pop(PROVENANCE_KEY, None)
    diff = config_diff(old, new)
    if diff and not allow_change:
      detail = ', '.join(
        f'{k}: {_flatten(old).get(k, "<absent>")!r} -> {_flatten(new).get(k, "<absent>")!r}' for k in diff
      )
      raise ConfigError(
        f'{workdir} holds a run with a different config ({detail}). Use another --workdir, '
        'or pass --allow_config_change to resume with the new values.'
      )
    if not diff:
      return
  if not write:
    return
  from moto_jax import provenance  # pylint: disable=g-import-not-at-top

  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump({**new, PROVENANCE_KEY: provenance.collect()}, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def load_recorded(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir's run was started with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir} the workdir of a run?')
  with open(path) as f:
    recorded = json.load(f)
  recorded.pop(PROVENANCE_KEY, None)
  # Fields added since the run was recorded, at the value that keeps what it did.
  flat = _flatten(recorded)
  for field, value in ADDED_FIELDS.items():
    if field in ADDED_FIELD_DOMAINS and recorded.get('domain') not in ADDED_FIELD_DOMAINS[field]:
      continue
    if value is not None and field not in flat:
      *path, leaf = field.split('.')
      section = recorded
      for key in path:
        section = section.setdefault(key, {})
      section[leaf] = value
  return ml_collections.ConfigDict(recorded)


# Fields of ADDED_FIELDS added after `learning_hash` existed (a field added from now on goes in both).
ADDED_AFTER_RECORDS = (
  'agent.balance',
  'agent.value_share',
  'agent.bc_filter',
  'data.bc_segments',
  'agent.critic_action_noise',
  'data.task_order',
  'agent.bc_final',
  'agent.bc_decay_updates',
  'env.reward',
  'agent.snippet_steps',
)

# Fields that change where files go or how often a run logs, not what it learns.
NOT_LEARNING = (
  'data.dir',
  'data.cache_dir',
  'data.skip_corrupt',
  'data.workers',
  'train.log_every',
  'train.checkpoint_every_minutes',
  'train.checkpoint_every_steps',
  'train.keep_checkpoints',
  'train.video_every_evals',
  'train.eval_envs',
)


def learning_hash(config) -> str:
  """A short hash of the config fields that decide what a run learns (all but `NOT_LEARNING`);
  `config` is a ConfigDict or the dict of a recorded config.json."""
  flat = _flatten(config if isinstance(config, dict) else to_dict(config))
  kept = {
    k: v
    for k, v in flat.items()
    if k not in NOT_LEARNING
    and not k.startswith(PROVENANCE_KEY + '.')
    # A field added after learning records began, at the value that keeps what runs did before it,
    # leaves the hash as it was.
    and not (k in ADDED_AFTER_RECORDS and ADDED_FIELDS[k] == v)
  }
  return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]
