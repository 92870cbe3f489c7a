"""One metrics writer that fans out to JSONL, TensorBoard and the console."""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

# Shown on the console line, in this order, when present.
CONSOLE_KEYS = ('wm/loss', 'wm/image_loss', 'wm/reward_loss', 'wm/kl', 'actor/loss', 'actor/bc_loglik',
                'critic/loss', 'agent/penalty', 'agent/value', 'eval/success_rate', 'eval/return',
                'episode/return', 'episode/success', 'diag/action_err_reset', 'diag/action_err_start',
                'diag/action_err_middle', 'diag/action_err_end', 'diag/q_data', 'diag/return_data',
                'diag/q_return_corr', 'diag/bc_grad_share')


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', buffering=1)
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), flush_secs=30)

  def write(self, step: int, phase: str, scalars: dict, console: bool = False, echo=print) -> None:
    clean = {}
    for k, v in scalars.items():
      v = float(np.asarray(v))
      clean[k] = v if math.isfinite(v) else str(v)
    record = dict(step=int(step), phase=phase, time=time.time(), **clean)
    self._jsonl.write(json.dumps(record) + '\n')
    if self._tb is not None:
      for k, v in clean.items():
        if isinstance(v, float):
          self._tb.add_scalar(k, v, step)
    if console:
      shown = [f'{k}={clean[k]:.3g}' if isinstance(clean[k], float) else f'{k}={clean[k]}'
               for k in CONSOLE_KEYS if k in clean]
      echo(f'[{phase} {step}] ' + ' '.join(shown))

  def close(self):
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
