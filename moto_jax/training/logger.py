"""One metrics writer that fans out to JSONL, TensorBoard and the console."""

from __future__ import annotations

import json
import logging
import math
import os
import time

import numpy as np

# Shown on the console line, in this order, when present.
CONSOLE_KEYS = (
  'wm/loss',
  'wm/image_loss',
  'wm/reward_loss',
  'wm/kl',
  'actor/loss',
  'actor/bc_loglik',
  'critic/loss',
  'actor/penalty',
  'actor/vhat_abs',
  'eval/success_rate',
  'eval/return',
  'episode/return',
  'episode/success',
  'diag/action_err_reset',
  'diag/action_err_start',
  'diag/action_err_middle',
  'diag/action_err_end',
  'diag/q_data',
  'diag/return_data',
  'diag/q_return_corr',
  'diag/bc_grad_share',
)


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, 'metrics.jsonl')
    _drop_torn_tail(path)
    self._jsonl = open(path, 'a', buffering=1)
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
      shown = [
        f'{k}={clean[k]:.3g}' if isinstance(clean[k], float) else f'{k}={clean[k]}' for k in CONSOLE_KEYS if k in clean
      ]
      echo(f'[{phase} {step}] ' + ' '.join(shown))

  def position(self) -> int:
    """Bytes of metrics.jsonl written so far (flushed): a checkpoint records it."""
    self._jsonl.flush()
    return self._jsonl.tell()

  def close(self):
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


class NullWriter:
  """The MetricWriter of a process that does not write the log (every process but 0 of a
  multi-process run; training/processes.py)."""

  def write(self, step: int, phase: str, scalars: dict, console: bool = False, echo=print) -> None:
    del step, phase, scalars, console, echo

  def position(self) -> int:
    return 0

  def close(self):
    pass


def truncate_metrics(workdir: str, nbytes: int) -> int:
  """Cuts `workdir/metrics.jsonl` back to its first `nbytes` bytes (the records a checkpoint had seen);
  returns how many bytes were dropped. A resumed run then logs the records after the checkpoint again,
  exactly once."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if nbytes < 0 or not os.path.exists(path):
    return 0
  size = os.path.getsize(path)
  if size <= nbytes:
    return 0
  with open(path, 'rb+') as f:
    f.truncate(nbytes)
  return size - nbytes


def _drop_torn_tail(path: str) -> None:
  """Cuts a partial last record (no final newline) so that appends start on a fresh line."""
  if not os.path.exists(path):
    return
  with open(path, 'rb+') as f:
    data = f.read()
    if data and not data.endswith(b'\n'):
      keep = data.rfind(b'\n') + 1
      try:
        json.loads(data[keep:])
      except ValueError:
        pass
      else:  # a whole record that lacks only its newline: keep it
        f.write(b'\n')
        return
      logging.warning('%s: dropping a torn last line (%d bytes) left by an interrupted write', path, len(data) - keep)
      f.truncate(keep)


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`; a torn last line (a crash or a full disk mid-write) is
  skipped with a warning. A malformed line before the last is an error naming the file and line."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
  records = []
  for k, (i, line) in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if k == len(lines) - 1:
        logging.warning('%s:%d: skipping a torn last line (%d bytes): %s', path, i, len(line), e)
        continue
      raise ValueError(f'{path}:{i}: not a JSON record ({e}); the metrics log is damaged') from e
  return records
