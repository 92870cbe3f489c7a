"""The update computes what it computed when tests/golden/update_debug.json was written.

A change that alters the update's numbers (a loss, a network, an optimiser setting of the `debug`
preset) fails here; if it is meant, rewrite the file with `python -m benchmarks.update_params
--write_golden`, which also marks the learning records made before it as stale.
"""

import json

from conftest import debug_config
import pytest

from moto_jax import testing


@pytest.fixture(scope='module')
def golden():
  with open(testing.GOLDEN) as f:
    return json.load(f)


@pytest.mark.xdist_group('golden')
def test_update_matches_golden_file(golden):
  got = testing.update_fingerprint(debug_config(), updates=golden['updates'])
  problems = testing.compare_fingerprints(golden, got)
  assert not problems, '\n'.join(problems[:20])


@pytest.mark.xdist_group('golden')
def test_golden_comparison_catches_a_change_of_the_update(golden):
  """A small change of one loss weight moves the fingerprint far beyond the tolerance."""
  got = testing.update_fingerprint(debug_config(bc_scale=1.1), updates=golden['updates'])
  problems = testing.compare_fingerprints(golden, got)
  assert any('actor' in p for p in problems), problems


def test_comparison_tolerance_and_hash(golden):
  """Round-off below the tolerance passes; a change above it, or a missing parameter, is named."""
  nudged = json.loads(json.dumps(golden))
  key = sorted(nudged['params'])[0]
  mean, mean_abs = nudged['params'][key]
  nudged['params'][key] = [mean + 1e-6 * mean_abs, mean_abs * (1 + 1e-6)]
  assert testing.compare_fingerprints(golden, nudged) == []
  nudged['params'][key] = [mean, mean_abs * (1 + 1e-3)]
  assert (
    len(testing.compare_fingerprints(golden, nudged)) == 1 and key in testing.compare_fingerprints(golden, nudged)[0]
  )
  del nudged['params'][key]
  assert 'added or removed' in testing.compare_fingerprints(golden, nudged)[0]
  h = testing.golden_hash()
  assert h is not None and len(h) == 12
