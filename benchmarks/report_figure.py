"""The learning-curve figures of `benchmarks.report`: a panel per task, a line per arm, the median
of an arm's seeds over its faint per-seed curves."""

from __future__ import annotations

from benchmarks.records import PRESET_ORDER, learning_groups, median


def arm_color(n: int) -> tuple:
  """The n-th arm's (colour, line style): the 20 colours of tab20, dark shades first, then the same
  with dashed lines, so that no two of 40 arms look alike."""
  import matplotlib

  shade = n % 20
  rgba = matplotlib.colormaps['tab20'](2 * shade if shade < 10 else 2 * (shade - 10) + 1)
  return rgba, '-' if n < 20 else '--'


def median_curve(curves: list[list]) -> list[tuple] | None:
  """The pointwise median of several seeds' curves [(env_steps, value), ...], where they were evaluated
  at the same env steps; None where they were not (or fewer than two)."""
  if len(curves) < 2 or any(not c for c in curves):
    return None
  steps = [tuple(x for x, _ in c) for c in curves]
  if len(set(steps)) != 1:
    return None
  return [(x, median([c[k][1] for c in curves])) for k, x in enumerate(steps[0])]


def curves_figure(records: list[dict], path: str, columns: int = 5) -> None:
  """Panels of `columns` tasks a row, the rows of each preset together (in PRESET_ORDER); a line per arm,
  an arm the same colour everywhere, a legend in each panel. An arm with several seeds is drawn as
  their median (bold) over each seed's curve (thin, faint)."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  groups = learning_groups(records)
  presets = sorted({k[1] for k in groups}, key=lambda p: (PRESET_ORDER.index(p) if p in PRESET_ORDER else 99, p))
  rows = []
  for preset in presets:
    tasks = list(dict.fromkeys(k[2] for k in groups if k[1] == preset))
    for start in range(0, len(tasks), columns):
      rows.append([(preset, t) for t in tasks[start : start + columns]])
  cols = max(len(r) for r in rows)
  fig, axes = plt.subplots(len(rows), cols, figsize=(2.9 * cols, 2.7 * len(rows)), squeeze=False)
  where = {panel: axes[r][c] for r, row in enumerate(rows) for c, panel in enumerate(row)}
  colors, tasks_panels = {}, set()
  for (_, preset, task, arm), rs in groups.items():
    ax = where[(preset, task)]
    color = colors.setdefault(arm, arm_color(len(colors)))
    rs = sorted(rs, key=lambda r: r['seed'])
    curves = [r.get('tasks_curve') or r['curve'] for r in rs]  # Kitchen: target tasks per episode
    if any('tasks_curve' in r for r in rs):
      tasks_panels.add((preset, task))
    kinds = {'tasks_curve' in r for r in rs}  # a median of like with like only
    mid = median_curve(curves) if len(kinds) == 1 else None
    for i, curve in enumerate(curves):
      xs, ys = zip(*curve) if curve else ((), ())
      faint = mid is not None or i > 0
      ax.plot(
        xs,
        ys,
        marker=None if mid is not None else 'o',
        markersize=3,
        linewidth=0.8 if mid is not None else 1.5,
        color=color[0],
        linestyle=color[1],
        alpha=0.35 if faint else 0.9,
        label=arm if i == 0 and mid is None else None,
      )
    if mid is not None:
      xs, ys = zip(*mid)
      ax.plot(
        xs,
        ys,
        marker='o',
        markersize=3,
        linewidth=2,
        color=color[0],
        linestyle=color[1],
        label=f'{arm} (median of {len(curves)})',
      )
    ax.set_title(f'{task} ({preset})', fontsize=9)
  for r, row in enumerate(rows):
    for c in range(cols):
      ax = axes[r][c]
      if c >= len(row):
        ax.set_visible(False)
        continue
      if row[c] in tasks_panels:
        ax.set_ylim(-0.1, 4.2)
        ax.set_ylabel('target tasks per episode', fontsize=8)
      else:
        ax.set_ylim(-0.05, 1.05)
        if c == 0 or row[c - 1] in tasks_panels:  # the first success panel of a row
          ax.set_ylabel('success rate')
      ax.axvline(0, color='gray', linestyle='--', linewidth=1)
      ax.set_xlabel('env steps (0 = offline end)', fontsize=8)
      ax.grid(alpha=0.3)
      ax.tick_params(labelsize=7)
      ax.legend(fontsize=6, loc='best')
  fig.tight_layout()
  fig.savefig(path, dpi=80, metadata={'Software': None})
  plt.close(fig)
