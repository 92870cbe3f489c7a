"""The main job's random streams, each named once.

Every stream derives from the run's seed and a counter, never from wall clock or call order, so a
resumed run draws what the uninterrupted run drew (training/loop.py).

* JAX keys: `fold_in(PRNGKey(config.seed), <offset> + <counter>)`; no counter of a run reaches the
  next offset, so these streams never meet.
* NumPy generators: the batch of gradient step s is drawn from `[config.seed, s]` (plus the retry
  count after a skipped update, plus `HOST_BATCH + process index` on several hosts); the other NumPy
  streams are `[config.seed, <stream>, ...]`. These share one entropy space: `[seed, 11]`
  (REFIT_EPISODES) is also the batch entropy of gradient step 11, and `[seed, 13]` (OFFLINE_SUBSET)
  that of step 13. The draws serve unrelated purposes (which offline episodes a refit holds or a run
  trains on; which windows one update sees), so nothing depends on it; the values are kept so that
  runs stay reproducible across versions.
* Environment starts: evaluation episode k starts from `episode_seed(config.seed, EVAL_STARTS + k)`,
  exploring episode i from `episode_seed(config.seed + EXPLORE_SEED, i)`.
"""

import jax

# JAX keys: fold_in offsets on PRNGKey(config.seed).
PARAMS = 0  # the initial parameters
COMPILE = 1  # the key the update is compiled with (ahead of time)
UPDATE = 10  # + gradient step: the update's key
EXPLORE = 2_000_000_000  # + online episode index: the exploring policy's draws
EVAL = 3_000_000_000  # evaluation episodes' policy key (the same at every evaluation)
DIAGNOSTICS = 4_000_000_000  # then fold_in(evaluation count): the diagnostics' posterior draws
REFIT_OFFLINE = 4_100_000_000  # the refit at the end of the offline phase
REFIT_ONLINE = 4_200_000_000  # + online episode count: the refit after that episode's updates
BOUND = 4_290_000_000  # then fold_in(evaluation count): the uncertainty bound's prior draws

# NumPy generators: [config.seed, stream, ...] (the batches: [config.seed, gradient step, ...]).
DIAGNOSTIC_BATCH = 7  # + [evaluation count]: the batch the BC gradient share is measured on
REFIT_EPISODES = 11  # which offline episodes the refits hold, when there are too many
OFFLINE_SUBSET = 13  # which offline episodes a run trains on (data.subset_episodes)
HOST_BATCH = 1_000_000  # + process index, 4th entry of a batch's seed: each host's share

# Environment start seeds.
EVAL_STARTS = 1_000_000  # evaluation starts never coincide with the training episodes'
EXPLORE_SEED = 1  # added to the seed: exploring episode i starts from episode_seed(seed + 1, i)


def key(rng: jax.Array, stream: int, counter: int = 0) -> jax.Array:
  """The key of `stream` (one of the offsets above) at `counter`."""
  return jax.random.fold_in(rng, stream + counter)
