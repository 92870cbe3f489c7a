"""Shared config sections and model-size presets.

Every tunable value lives here as a config field; `configs/metaworld.py` and
`configs/kitchen.py` fill in the domain-specific parts. Presets are chosen by
argument: `configs/metaworld.py:drawer-open,small`.
"""
import ml_collections

PRESETS = ('paper', 'small', 'debug')


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
      raise ValueError(f'{config_file}: unknown argument {p!r}; expected a task in {tuple(tasks)} '
                       f'and/or a preset in {PRESETS}')
  return task, preset


def assemble(domain: str, task: str, preset: str, env: dict, data: dict) -> ml_collections.ConfigDict:
  """The full, locked config: domain sections `env` and `data` plus the shared model/agent/train.

  Every domain's `data` section also has `dir` (offline dataset directory; empty = generate into
  `cache_dir`), `cache_dir`, `skip_corrupt` (skip and count unreadable episode files instead
  of failing) and `subset_episodes` (train on a seeded random subset of that many offline
  episodes, App. A.2; 0 = all).
  """
  c = ml_collections.ConfigDict()
  c.domain = domain
  c.task = task
  c.preset = preset
  c.seed = 0
  # render_quality: 'fast' (no MSAA, shadows or reflections) or 'shipped' (the model's own look).
  c.env = ml_collections.ConfigDict(dict(image_size=64, render_quality='fast', **env))
  c.data = ml_collections.ConfigDict(dict(dir='', cache_dir='~/.cache/moto_jax/datasets',
                                          skip_corrupt=False, subset_episodes=0, **data))
  c.model = model_config(preset)
  c.agent = agent_config(preset)
  c.train = train_config(preset)
  return c.lock()


def model_config(preset: str) -> ml_collections.ConfigDict:
  """World model (ALGORITHM.md Sec. 1): encoder, decoder, ensembled RSSM, reward head."""
  sizes = {
      # DreamerV2 dmc_vision sizes (ALGORITHM.md Sec. 8).
      'paper': dict(depth=48, deter=200, hidden=200, groups=32, classes=32, ensemble=7, head_units=400, head_layers=2),
      # Sized so a world-model step at batch 16 x 32 runs well under a second on a 2-core CPU.
      'small': dict(depth=8, deter=128, hidden=128, groups=16, classes=16, ensemble=7, head_units=128, head_layers=2),
      # Tiny: tests only.
      'debug': dict(depth=4, deter=16, hidden=16, groups=4, classes=4, ensemble=3, head_units=16, head_layers=1),
  }[preset]
  c = ml_collections.ConfigDict()
  # impl: how convolutions are computed, same parameters and outputs ('auto' | 'xla' | 'patches' |
  # 'phases', conv.py; 'auto': 'patches' on a CPU, 'xla' on GPU/TPU). At paper sizes XLA:CPU's own
  # kernel gradients of the strided and transposed convs run at 2-10 GFLOP/s; as matrix products
  # the paper update is 10x faster (BUILD_NOTES, "Where an update's time goes"). At `small` sizes
  # the encoder as patches makes the update ~7 % faster (XLA's kernel gradient of its first layer,
  # 3 -> 8 channels, is slow); the subpixel decoder's stride-1 convolutions are as fast or faster in
  # XLA's own form (BUILD_NOTES, "Speed on the CPU"). 'debug' (the tests): XLA's.
  c.encoder = dict(depth=sizes['depth'], kernel=4, layers=4, impl='xla' if preset == 'debug' else 'auto')
  c.decoder = dict(kind='subpixel' if preset != 'paper' else 'transpose', depth=sizes['depth'], kernel=4, layers=4,
                   subpixel_kernel=3,   # kernel of the 'subpixel' kind's stride-1 convs
                   impl='auto' if preset == 'paper' else 'xla')
  c.rssm = dict(deter=sizes['deter'], hidden=sizes['hidden'], groups=sizes['groups'], classes=sizes['classes'],
                ensemble=sizes['ensemble'], unimix=0.01)
  c.reward_head = dict(units=sizes['head_units'], layers=sizes['head_layers'])
  c.kl_alpha = 0.8          # KL balancing (Eq. 1)
  c.kl_scale = 1.0          # beta_kl
  c.free_nats = 0.0
  c.image_scale = 1.0       # weight of the image log-likelihood
  c.reward_scale = 1.0      # weight of the reward log-likelihood
  # Precision of the image encoder's and decoder's products, most of the update's arithmetic
  # (networks/precision.py): 'float32', or 'bfloat16' (factors rounded to bfloat16, float32
  # accumulation; parameters, optimizer, normalisation, the RSSM, heads and losses stay float32).
  # Faster where the hardware multiplies bfloat16 natively: on CPUs with AMX / AVX512-BF16 through
  # XLA's YNNPACK with impl 'patches' (`paper`: 1.2-1.3x here; `small`: no gain; BUILD_NOTES). GPU
  # tensor cores should gain too; not measured.
  c.compute_dtype = 'float32'
  c.lr = 3e-4
  c.eps = 1e-5
  c.grad_clip = 100.0
  return c


def agent_config(preset: str) -> ml_collections.ConfigDict:
  """Actor-critic (ALGORITHM.md Secs. 3-7)."""
  units, layers = {'paper': (400, 4), 'small': (128, 2), 'debug': (16, 1)}[preset]
  c = ml_collections.ConfigDict()
  c.mode = 'moto'             # 'moto' | 'dreamerv2' (lambda-returns, no BC, no penalty, no L_data)
  c.horizon = 5               # H (MVE horizon); DreamerV2 mode uses dreamer_horizon
  c.dreamer_horizon = 15
  c.lambda_ = 0.95            # DreamerV2 mode only
  c.gamma = 0.99
  c.tau = 0.005 if preset == 'paper' else 0.02   # Polyak rate of the target critics (BUILD_NOTES)
  # Decay per actor step of the averaged actor that acts (TrainState.actor_ema); 0 = act with the
  # trained actor itself (the paper). BUILD_NOTES "The dip is the actor's own noise".
  c.actor_ema = {'small': 0.998, 'debug': 0.5}.get(preset, 0.0)   # debug: exercised by the tests
  c.penalty_scale = 1.0       # lambda_u (Eq. 3); 0 = "No Unc." ablation
  # beta_bc (Eq. 10); 0 = "No BC" ablation. 'small': 100, because at a CPU budget the critic is not
  # yet calibrated and value expansion through it pulls the policy off the demos (BUILD_NOTES probes:
  # on the same frozen model, bc_scale 10 -> 3/10, 100 -> 9/10, BC alone 10/10).
  c.bc_scale = 100.0 if preset == 'small' else 1.0
  c.data_critic_loss = True   # L_data (Eq. 8); False = ablation
  # Actor-critic steps per world-model step (update.train_step): step k imagines from the posterior
  # states at time indices k::K, so K steps cost about one step's imagination. The paper: 1.
  c.actor_steps = 4 if preset == 'small' else 1
  c.actor = dict(units=units, layers=layers, min_std=0.1, max_std=1.0)
  c.critic = dict(units=units, layers=layers)
  # DreamerV2's 8e-5 at the paper's 10k offline steps; the CPU preset trains ~15x fewer.
  c.actor_lr = {'paper': 8e-5, 'small': 1e-3}.get(preset, 3e-4)
  c.critic_lr = 8e-5 if preset == 'paper' else 3e-4
  c.grad_clip = 100.0
  c.entropy_scale = 0.0       # weight of the policy entropy bonus in the actor loss (DreamerV2: 1e-4)
  c.bc_eps = 1e-2             # dataset actions are clipped to [-1+eps, 1-eps] for log pi (BUILD_NOTES)
  # Exploring episodes act from 'sample' (a policy draw; DreamerV2, the paper) or 'mode' (tanh(mean)),
  # plus explore_noise Gaussian noise (std; clipped to [-1, 1]). 'mode' + 0.1 gave 0.55 -> 0.80 on seed 0
  # but 0.75 -> 0.20 on seed 1 (BUILD_NOTES, runs E2): no default change on that evidence.
  c.explore_from = 'sample'
  c.explore_noise = 0.0
  return c


def train_config(preset: str) -> ml_collections.ConfigDict:
  """The main job's schedule (issue: offline then online)."""
  c = ml_collections.ConfigDict()
  if preset == 'paper':
    c.batch_size, c.seq_len = 16, 50
    c.offline_steps, c.env_steps = 10_000, 500_000
    c.updates_per_episode = 100
    c.eval_every_episodes, c.eval_episodes = 10, 10
  elif preset == 'small':
    # The CPU learning preset: sized so drawer-open finishes within 20 minutes on a slow 2-core
    # CPU (~0.9 s per update; BUILD_NOTES "Learning on the CPU", "A 20-minute schedule").
    c.batch_size, c.seq_len = 8, 32
    c.offline_steps, c.env_steps = 600, 1_000
    c.updates_per_episode = 20
    c.eval_every_episodes, c.eval_episodes = 5, 20
  else:
    c.batch_size, c.seq_len = 2, 8
    c.offline_steps, c.env_steps = 4, 40
    c.updates_per_episode = 2
    c.eval_every_episodes, c.eval_episodes = 1, 1
  # Actor-critic steps on the frozen world model at the end of the offline phase (agent/refit.py;
  # each takes agent.actor_steps of them like an update, without the world-model step: ~0.3 s
  # for `small` on a slow 2-core CPU, against ~0.9 s for an update). The paper: 0.
  c.refit_steps = 300 if preset == 'small' else (3 if preset == 'debug' else 0)
  # The same after each online episode's updates, on the offline and online episodes with the
  # world model those updates left (the actor keeps up with a model that online data moves).
  c.online_refit_steps = {'small': 50, 'debug': 2}.get(preset, 0)
  # Evaluation episodes run this many environments in lock step (one batched policy call per step).
  c.eval_envs = min(c.eval_episodes, 10) if preset != 'debug' else 1
  c.online_fraction = 0.5          # most of a batch from online episodes (share: min(this, online/all steps))
  c.cover_edges = True             # window starts clamped at episode edges: every step sampled comparably
  c.log_every = 50 if preset != 'debug' else 1
  c.checkpoint_every_minutes = 10.0
  c.checkpoint_every_steps = 1000 if preset != 'debug' else 2
  c.keep_checkpoints = 3
  c.max_nonfinite = 10             # consecutive non-finite updates before the run stops
  c.video_every_evals = 2
  # The uncertainty bound of App. B at every evaluation (training/bound.py): the scripted expert on
  # the first `bound_episodes` evaluation start seeds (0 = off), Eq. 12 from its first `bound_starts` steps.
  c.bound_episodes = {'debug': 1}.get(preset, 10)
  c.bound_starts = 2 if preset == 'debug' else 5
  return c
