"""The paper's defaults and the presets, each one block of overrides on top of them.

`defaults()` is the paper's setting (DreamerV2 sizes, ALGORITHM.md). A preset is a flat dict of
`section.field: value` applied over it; `configs/metaworld.py` and `configs/kitchen.py` add their
domain sections and their own per-preset overrides. Choose one by argument:
`--config=configs/metaworld.py:drawer-open,small`; any field by flag: `--config.agent.bc_scale=10`.
"""

import ml_collections

PRESETS = ('paper', 'small', 'long', 'debug')

# How `small` departs from the paper, to fit a 2-core CPU: narrower networks, a short schedule, and
# four changes that make a short schedule learn (each undone by the flag in its comment).
SMALL = {
  # Sizes: a world-model step at batch 8 x 32 in ~0.1 s on 2 cores.
  'model.encoder.depth': 8,
  'model.decoder.depth': 8,
  'model.rssm.deter': 128,
  'model.rssm.hidden': 128,
  'model.rssm.groups': 16,
  'model.rssm.classes': 16,
  'model.reward_head.units': 128,
  'agent.actor.units': 128,
  'agent.actor.layers': 2,
  'agent.critic.units': 128,
  'agent.critic.layers': 2,
  # Stride-2 "subpixel" decoder: as good at this width and faster on a CPU than the transposed one.
  'model.decoder.kind': 'subpixel',
  'model.decoder.impl': 'xla',
  # Schedule: 600 offline updates, 1,000 env steps online (the paper: 10k and 500k).
  'train.batch_size': 8,
  'train.seq_len': 32,
  'train.offline_steps': 600,
  'train.env_steps': 1_000,
  'train.updates_per_episode': 20,
  'train.eval_every_episodes': 5,
  'train.eval_episodes': 20,
  # Learning rates for ~15x fewer steps than the paper's.
  'agent.actor_lr': 1e-3,
  'agent.critic_lr': 3e-4,
  'agent.tau': 0.02,
  # Cloning outweighs the critic, which is not calibrated at this budget (=1: the paper).
  'agent.bc_scale': 100.0,
  # 4 actor-critic steps per world-model step, from 4 disjoint sets of start states (=1: the paper).
  'agent.actor_steps': 4,
  # Actor-critic steps on the frozen world model at the offline end and after each online
  # episode's updates (=0 both: the paper).
  'train.refit_steps': 300,
  'train.online_refit_steps': 50,
  # The policy that acts is a running average of the actor's parameters (=0: the paper).
  'agent.actor_ema': 0.998,
}

# `small` with room to fine-tune: 10,000 env steps online (50 episodes, 1,000 updates), an
# evaluation every 10 episodes; about 25 min a MetaWorld run on 2 cores.
LONG = {**SMALL, 'train.env_steps': 10_000, 'train.eval_every_episodes': 10}

# Tiny sizes for the tests (compile time dominates).
DEBUG = {
  'model.encoder.depth': 4,
  'model.decoder.depth': 4,
  'model.encoder.impl': 'xla',
  'model.decoder.kind': 'subpixel',
  'model.decoder.impl': 'xla',
  'model.rssm.deter': 16,
  'model.rssm.hidden': 16,
  'model.rssm.groups': 4,
  'model.rssm.classes': 4,
  'model.rssm.ensemble': 3,
  'model.reward_head.units': 16,
  'model.reward_head.layers': 1,
  'agent.actor.units': 16,
  'agent.actor.layers': 1,
  'agent.critic.units': 16,
  'agent.critic.layers': 1,
  'agent.actor_lr': 3e-4,
  'agent.critic_lr': 3e-4,
  'agent.tau': 0.02,
  'agent.actor_ema': 0.5,
  'train.batch_size': 2,
  'train.seq_len': 8,
  'train.offline_steps': 4,
  'train.env_steps': 40,
  'train.updates_per_episode': 2,
  'train.eval_every_episodes': 1,
  'train.eval_episodes': 1,
  'train.eval_envs': 1,
  'train.refit_steps': 3,
  'train.online_refit_steps': 2,
  'train.log_every': 1,
  'train.checkpoint_every_steps': 2,
  'train.bound_episodes': 1,
  'train.bound_starts': 2,
}

OVERRIDES = {'paper': {}, 'small': SMALL, 'long': LONG, 'debug': DEBUG}


def parse_arg(arg: str | None, default_task: str, config_file: str, tasks=None) -> tuple[str, str]:
  """Splits `'<task>[,<preset>]'` (either order); `tasks` restricts the task names if given."""
  task, preset = default_task, 'small'
  for p in (p.strip() for p in (arg or '').split(',')):
    if not p:
      continue
    if p in PRESETS:
      preset = p
    elif tasks is None or p in tasks:
      task = p
    else:
      raise ValueError(
        f'{config_file}: unknown argument {p!r}; expected a task in {tuple(tasks)} and/or a preset in {PRESETS}'
      )
  return task, preset


def assemble(
  domain: str, task: str, preset: str, env: dict, data: dict, domain_overrides: dict | None = None
) -> ml_collections.ConfigDict:
  """The full, locked config: the paper's defaults with the domain's `env` and `data` sections,
  then the preset's overrides, then the domain's overrides for that preset.

  Every domain's `data` section also has `dir` (offline dataset directory; empty = generate into
  `cache_dir`), `cache_dir`, `skip_corrupt` (skip and count unreadable episode files instead
  of failing) and `subset_episodes` (train on a seeded random subset of that many offline
  episodes, App. A.2; 0 = all).
  """
  c = defaults()
  c.domain, c.task, c.preset = domain, task, preset
  # render_quality: 'fast' (no MSAA, shadows or reflections) or 'shipped' (the model's own look).
  c.env = ml_collections.ConfigDict(dict(image_size=64, render_quality='fast', **env))
  c.data = ml_collections.ConfigDict(
    dict(dir='', cache_dir='~/.cache/moto_jax/datasets', skip_corrupt=False, subset_episodes=0, **data)
  )
  for field, value in {**OVERRIDES[preset], **(domain_overrides or {})}.items():
    set_field(c, field, value)
  return c.lock()


def set_field(config: ml_collections.ConfigDict, field: str, value) -> None:
  *path, leaf = field.split('.')
  section = config
  for key in path:
    section = section[key]
  if leaf not in section:
    raise KeyError(f'preset override {field!r}: the config has no such field')
  section[leaf] = value


def defaults() -> ml_collections.ConfigDict:
  """The paper's setting (for a GPU): DreamerV2 dmc_vision sizes, batch 16 x 50, 10k offline
  gradient steps, 500k env steps."""
  c = ml_collections.ConfigDict()
  c.domain, c.task, c.preset, c.seed = '', '', 'paper', 0
  c.model = model_config()
  c.agent = agent_config()
  c.train = train_config()
  return c


def model_config() -> ml_collections.ConfigDict:
  """World model (ALGORITHM.md Sec. 1): encoder, decoder, ensembled RSSM, reward head."""
  c = ml_collections.ConfigDict()
  # impl: how convolutions are computed, same parameters and outputs ('auto' | 'xla' | 'patches' |
  # 'phases'; networks/conv.py). 'auto': as matrix products ('patches') on a CPU, where XLA's own
  # kernel gradients of strided convolutions are slow; XLA's own on GPU/TPU.
  c.encoder = dict(depth=48, kernel=4, layers=4, impl='auto')
  c.decoder = dict(
    kind='transpose',
    depth=48,
    kernel=4,
    layers=4,
    subpixel_kernel=3,  # kernel of the 'subpixel' kind's stride-1 convs
    impl='auto',
  )
  c.rssm = dict(deter=200, hidden=200, groups=32, classes=32, ensemble=7, unimix=0.01)
  c.reward_head = dict(units=400, layers=2)
  c.kl_alpha = 0.8  # KL balancing (Eq. 1)
  c.kl_scale = 1.0  # beta_kl
  c.free_nats = 0.0
  c.image_scale = 1.0  # weight of the image log-likelihood
  c.reward_scale = 1.0  # weight of the reward log-likelihood
  # Precision of the image encoder's and decoder's products (xla_cpu/precision.py): 'float32', or
  # 'bfloat16' (factors rounded, float32 accumulation; parameters, RSSM, heads and losses stay
  # float32). Faster where the hardware multiplies bfloat16 natively.
  c.compute_dtype = 'float32'
  c.lr = 3e-4
  c.eps = 1e-5
  c.grad_clip = 100.0
  return c


def agent_config() -> ml_collections.ConfigDict:
  """Actor-critic (ALGORITHM.md Secs. 3-7)."""
  c = ml_collections.ConfigDict()
  # 'moto' | 'bc' (the same stack, the actor's value term off: the cloning baseline) | 'dreamerv2'
  # (lambda-returns, no BC, no penalty, no L_data).
  c.mode = 'moto'
  c.horizon = 5  # H (MVE horizon); DreamerV2 mode uses dreamer_horizon
  c.dreamer_horizon = 15
  c.lambda_ = 0.95  # DreamerV2 mode only
  c.gamma = 0.99
  c.tau = 0.005  # Polyak rate of the target critics
  c.actor_ema = 0.0  # decay per actor step of the averaged actor that acts; 0 = the actor itself
  c.penalty_scale = 1.0  # lambda_u (Eq. 3); 0 = "No Unc." ablation
  c.bc_scale = 1.0  # beta_bc (Eq. 10); 0 = "No BC" ablation
  # How the actor's value and cloning gradients combine: 'fixed' (the paper: g_MB + bc_scale * g_BC)
  # or 'share' (unit directions mixed as value_share : 1 - value_share, whatever the scales of
  # rewards, Q and the policy's sigma; docs/ALGORITHM.md).
  c.balance = 'fixed'
  c.value_share = 0.5
  # How the cloning term weighs real pairs (mode 'moto'): 'none' (Eq. 10: every pair of a successful
  # episode alike), 'q' (only where the critics rate the data's action at least as high as the
  # policy's: the Q-filter), 'advantage' (by the data action's advantage, standardised within the
  # batch, mean weight 1), 'snippets' (below) or 'all' (every real pair, successful or not, with or
  # without the value term: the control for 'snippets'); agent/cloning.py.
  c.bc_filter = 'none'
  # bc_filter 'snippets' (beyond the paper's success filter, within its Eq. 10 after ABM): also clone
  # every real pair whose advantage over this many real steps, bootstrapped with the critics' value
  # of the state reached, is positive (agent/cloning.snippet_advantage); cut at the window's end.
  c.snippet_steps = 10
  c.data_critic_loss = True  # L_data (Eq. 8); False = ablation
  # Beyond the paper: > 0 also trains the critics on one world-model step from every imagined state
  # under the policy's action plus Gaussian noise of this std (clipped to [-1, 1]), so that Q learns
  # how it changes with the action (agent/actor_critic_loss.perturbed_transitions). 0 = the paper.
  c.critic_action_noise = 0.0
  # Beyond the paper: the cloning term's weight falls during fine-tuning, geometrically from its
  # value at the offline end to bc_final times it over bc_decay_updates updates, then stays there
  # (agent/cloning.cloning_weight; with either balance). 1.0 = the paper (constant).
  c.bc_final = 1.0
  c.bc_decay_updates = 1000
  # Actor-critic steps per world-model step (update.train_step): step k imagines from the posterior
  # states at time indices k::K, so K steps cost about one step's imagination.
  c.actor_steps = 1
  c.actor = dict(units=400, layers=4, min_std=0.1, max_std=1.0)
  c.critic = dict(units=400, layers=4)
  c.actor_lr = 8e-5  # DreamerV2's
  c.critic_lr = 8e-5
  c.grad_clip = 100.0
  c.entropy_scale = 0.0  # weight of the policy entropy bonus in the actor loss (DreamerV2: 1e-4)
  # Dataset actions are clipped to [-1+eps, 1-eps] for log pi: at 1e-4 the saturated dimensions'
  # targets (atanh = 4.95) dominate the gradient and the smooth ones are not fitted.
  c.bc_eps = 1e-2
  # Exploring episodes act from 'sample' (a policy draw; DreamerV2, the paper) or 'mode' (tanh(mean)),
  # plus explore_noise Gaussian noise (std; clipped to [-1, 1]). 'mode' + 0.1 helped one seed and
  # hurt another: not a default.
  c.explore_from = 'sample'
  c.explore_noise = 0.0
  return c


def train_config() -> ml_collections.ConfigDict:
  """The main job's schedule: offline, then online."""
  c = ml_collections.ConfigDict()
  c.batch_size, c.seq_len = 16, 50
  c.offline_steps, c.env_steps = 10_000, 500_000
  c.updates_per_episode = 100
  c.eval_every_episodes, c.eval_episodes = 10, 10
  # Actor-critic steps on the frozen world model at the end of the offline phase (agent/refit.py;
  # each takes agent.actor_steps of them, without the world-model step). The paper: 0.
  c.refit_steps = 0
  # The same after each online episode's updates, on the offline and online episodes with the
  # world model those updates left (the actor keeps up with a model that online data moves).
  c.online_refit_steps = 0
  # Evaluation episodes run this many environments in lock step (one batched policy call per step).
  c.eval_envs = 10
  c.online_fraction = 0.5  # most of a batch from online episodes (share: min(this, online/all steps))
  c.cover_edges = True  # window starts clamped at episode edges: every step sampled comparably
  c.log_every = 50
  c.checkpoint_every_minutes = 10.0
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.max_nonfinite = 10  # consecutive non-finite updates before the run stops
  c.video_every_evals = 2
  # The uncertainty bound of App. B at every evaluation (training/bound.py): the scripted expert on
  # the first `bound_episodes` evaluation start seeds (0 = off), Eq. 12 from its first `bound_starts` steps.
  c.bound_episodes = 10
  c.bound_starts = 5
  return c
