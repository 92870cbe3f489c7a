"""The main job's random streams, each named once.

Every stream derives from the run's seed and a counter, never from wall clock or call order, so a
resumed run draws what the uninterrupted run drew (training/loop.py). JAX keys are
`fold_in(PRNGKey(config.seed), <stream> + <counter>)`; NumPy generators are seeded with
`[config.seed, <stream>, <counters>...]`; environment starts are `episode_seed(<seed>, <offset> + k)`.
The offsets keep the streams apart: no counter of a run reaches the next stream's offset.
"""
import jax

# JAX keys: fold_in offsets on PRNGKey(config.seed).
PARAMS = 0                      # the initial parameters
COMPILE = 1                     # the key the update is compiled with (ahead of time)
UPDATE = 10                     # + gradient step: the update's key
EXPLORE = 2_000_000_000         # + online episode index: the exploring policy's draws
EVAL = 3_000_000_000            # evaluation episodes' policy key (the same at every evaluation)
DIAGNOSTICS = 4_000_000_000     # then fold_in(evaluation count): the diagnostics' posterior draws
REFIT_OFFLINE = 4_100_000_000   # the refit at the end of the offline phase
REFIT_ONLINE = 4_200_000_000    # + online episode count: the refit after that episode's updates

# NumPy generators: [config.seed, stream, ...].
DIAGNOSTIC_BATCH = 7            # + [evaluation count]: the batch the BC gradient share is measured on
REFIT_EPISODES = 11             # which offline episodes the refits hold, when there are too many
HOST_BATCH = 1_000_000          # + process index: multi-host runs, each process's share of a batch

# Environment start seeds: episode_seed(seed, offset + k).
EVAL_STARTS = 1_000_000         # evaluation starts never coincide with the training episodes'
EXPLORE_SEED = 1                # exploring episode i starts from episode_seed(config.seed + 1, i)


def key(rng: jax.Array, stream: int, counter: int = 0) -> jax.Array:
  """The key of `stream` (one of the offsets above) at `counter`."""
  return jax.random.fold_in(rng, stream + counter)
