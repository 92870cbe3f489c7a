"""Per-op times of a compiled XLA program from a `jax.profiler` trace, with each op's source.

XLA:CPU records every thunk it runs (fusions, matrix products, copies) in the trace, named as the
instruction in the optimized HLO; the HLO's metadata names the jax operation it came from. The
times are summed over every thread (both XLA devices), so ops that ran at once add up to more
than the wall time. A `while` (a scan) spans the ops of its body, which are listed too: its time
counts them again.
"""

import collections
import glob
import re
import tempfile

import jax

_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%(\S+) = ([^\n]*)$', re.M)
_SOURCE = re.compile(r'metadata=\{[^}]*?op_name="([^"]*)"')


def op_sources(hlo_text: str) -> dict:
  """{instruction name: jax op_name ('' where XLA made the op itself)} of an optimized HLO text."""
  sources = {}
  for name, rest in _INSTRUCTION.findall(hlo_text):
    found = _SOURCE.search(rest)
    sources[name] = found.group(1) if found else ''
  return sources


def top_ops(call, hlo_text: str, calls: int, top: int | None) -> list[tuple[float, int, str, str]]:
  """Runs `call()` (which blocks until done) `calls` times under the profiler.

  Returns the `top` ops (None: all) as (ms per call, runs per call, instruction, source), by time.
  """
  sources = op_sources(hlo_text)
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir):
      for _ in range(calls):
        call()
    files = glob.glob(f'{logdir}/**/*.xplane.pb', recursive=True)
    if not files:
      raise RuntimeError(f'jax.profiler wrote no trace under {logdir}')
    data = jax.profiler.ProfileData.from_file(files[0])
  total, runs = collections.Counter(), collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        if event.name in sources:
          total[event.name] += event.duration_ns
          runs[event.name] += 1
  return [(ns / 1e6 / calls, runs[name] / calls, name, sources[name]) for name, ns in total.most_common(top)]


def print_top_ops(title: str, rows, wall_ms: float) -> None:
  print(f'\n{title}: top XLA ops (ms per call, summed over threads; wall {wall_ms:.1f} ms per call)')
  print('| ms | runs | op | from |\n|---|---|---|---|')
  for ms, n, name, source in rows:
    note = ' (spans its body)' if name.startswith('while') else ''
    print(f'| {ms:.1f} | {n:g} | {name}{note} | {source[-110:] or "(made by XLA)"} |')


_MODULE = re.compile(r'jvp\((\w+)\)')


def group_of(name: str, source: str) -> tuple[str, str, str]:
  """(part, pass, kind) of an op: the flax module it came from (else 'scan' inside a `while` body,
  which is where the RSSM's steps run, else '-': XLA's own ops, e.g. convolutions' kernel
  gradients, carry no source), 'backward' under a transpose, and the op's kind (its instruction
  name without the number: 'ynn_fusion' runs matrix products, 'all-reduce' waits for the other
  devices)."""
  kind = re.sub(r'\.\d+$', '', name)
  found = _MODULE.search(source)
  part = found.group(1) if found else 'scan' if '/while/' in source else '-'
  return part, ('backward' if 'transpose(' in source else 'forward'), kind


def print_groups(title: str, rows) -> None:
  """Over every op of `rows` (from `top_ops(..., None)`), `while` ops left out (they span their
  bodies' ops, which are counted): the number of op runs per call with their mean time, a table of
  op time by time per run (a program of many tiny ops is bound by their count, not by its
  arithmetic), then op time summed by part and pass, and by kind."""
  rows = [r for r in rows if not r[2].startswith('while')]
  total = sum(r[0] for r in rows)
  if not rows or total <= 0:
    print(f'\n{title}: no ops in the trace')
    return
  runs = sum(r[1] for r in rows)
  print(f'\n{title}: {runs:,.0f} op runs per call (all devices), {total / runs * 1e3:.0f} us each on average')
  print('| ms per run | op runs | ms | share |\n|---|---|---|---|')
  bounds = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, float('inf'))
  for low, high in zip((0.0,) + bounds[:-1], bounds):
    picked = [r for r in rows if r[1] and low <= r[0] / r[1] < high]
    ms = sum(r[0] for r in picked)
    print(f'| {low:g}-{high:g} | {sum(r[1] for r in picked):,.0f} | {ms:.1f} | {ms / total:.0%} |')
  for label, key in (('part, pass', lambda g: f'{g[0]}, {g[1]}'), ('kind', lambda g: g[2])):
    sums = collections.Counter()
    for ms, _, name, source in rows:
      sums[key(group_of(name, source))] += ms
    print(f'\n{title}: op time by {label} (ms per call, summed over threads; all ops {total:.0f} ms)')
    print(f'| {label} | ms | share |\n|---|---|---|')
    for group, ms in sums.most_common(12):
      print(f'| {group} | {ms:.1f} | {ms / total:.0%} |')
