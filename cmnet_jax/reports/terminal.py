"""Terminal output: the final results table and the training progress (fold group, epoch, loss,
time per epoch, ETA), through tqdm.

On a terminal tqdm's bar is redrawn in place, and each fold group's last epoch stays as a line
above it. When stdout is a file or a pipe (cluster and CI logs) there is no bar and no '\\r':
whole lines, one per epoch at most every `min_interval` seconds plus the last epoch of each
group, so logs stay short and readable.
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable, Mapping, Sequence, TextIO


def format_results_table(rows: Mapping[str, Mapping[str, Any]], *,
                         class_names: Sequence[str] | None = None) -> str:
  """Plain-text table of `metrics.summarize` dicts, one row each (e.g. 'all', then databases).

  With `class_names`, a second block lists per-class support, F1 and recall of the first row.

  >>> print(format_results_table({'all': {'num_samples': 4, 'accuracy': 0.75, 'uf1': 0.7333,
  ...                                     'uar': 0.75}}))
  rows  samples  accuracy     UF1     UAR
  all         4    0.7500  0.7333  0.7500
  """
  if not rows:
    raise ValueError("results table: no rows")
  width = max(4, *(len(str(k)) for k in rows))
  lines = [f"{'rows':<{width}}  samples  accuracy     UF1     UAR"]
  for name, s in rows.items():
    lines.append(f"{str(name):<{width}}  {int(s['num_samples']):>7d}  {s['accuracy']:>8.4f}  "
                 f"{s['uf1']:>6.4f}  {s['uar']:>6.4f}")
  if class_names is not None:
    first_name, first = next(iter(rows.items()))
    cw = max(5, *(len(c) for c in class_names))
    lines += ["", f"per class ({first_name}):", f"{'class':<{cw}}  support      F1  recall"]
    for c, name in enumerate(class_names):
      lines.append(f"{name:<{cw}}  {int(first['support'][c]):>7d}  "
                   f"{first['per_class_f1'][c]:>6.4f}  {first['per_class_recall'][c]:>6.4f}")
  return "\n".join(lines)


class _Null:
  """Where the bar draws when it is not on a terminal: nowhere (`Progress` prints its lines)."""

  def write(self, _):
    pass

  def flush(self):
    pass


def _bar_class():
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel

  class Bar(tqdm):  # pylint: disable=abstract-method
    """tqdm with the ETA from the median epoch (set in `rate`), robust to the first epoch's
    compilation, where tqdm's own estimate is a moving average of every epoch."""
    monitor_interval = 0  # no monitor thread
    rate = None

    @property
    def format_dict(self):
      d = super().format_dict
      if self.rate:
        d["rate"] = self.rate
      return d

  return Bar


class Progress:
  """Shows `group g/G | epoch e/E | loss x | s/epoch | ETA` as training goes (tqdm).

  The ETA is the median seconds per epoch seen so far (robust to the first epoch's compile time)
  times the epochs left in this and the later, unfinished groups.

  >>> import io
  >>> out = io.StringIO()
  >>> p = Progress(2, 3, stream=out)
  >>> p.update(0, 1, 1.5, seconds=10.0)
  >>> print(out.getvalue(), end='')
  group 1/2 | epoch 1/3 | loss 1.5000 | 10.00s/epoch | ETA 00:50
  """

  BAR_FORMAT = "{desc} | {rate_inv_fmt} | ETA {remaining}"
  TTY_BAR_FORMAT = "{desc} |{bar:20}| {rate_inv_fmt} | ETA {remaining}"

  def __init__(self, num_groups: int, num_epochs: int, *, stream: TextIO | None = None,
               min_interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
    if num_groups < 1 or num_epochs < 1:
      raise ValueError(f"Progress needs num_groups >= 1 and num_epochs >= 1, got {num_groups}, "
                       f"{num_epochs}")
    self.num_groups, self.num_epochs = num_groups, num_epochs
    self.stream = stream if stream is not None else sys.stdout
    self.min_interval = min_interval
    self._clock = clock
    self._durations: list[float] = []
    self._last_epoch: dict[int, int] = {}
    self._last_print = -float("inf")
    self._last_time: float | None = None
    isatty = getattr(self.stream, "isatty", None)
    self.interactive = bool(isatty and isatty())
    self._bar = _bar_class()(
        total=num_groups * num_epochs, unit="epoch", file=self.stream if self.interactive
        else _Null(), bar_format=self.TTY_BAR_FORMAT if self.interactive else self.BAR_FORMAT,
        mininterval=0, leave=False, position=0,
        desc=f"group 1/{num_groups} | epoch 0/{num_epochs}")

  def eta(self) -> float | None:
    """Seconds left (None before any epoch was timed)."""
    if not self._durations:
      return None
    return statistics.median(self._durations) * (self._bar.total - self._bar.n)

  def skip(self, group: int) -> None:
    """Marks `group` as finished by an earlier run (resumed workdir)."""
    self._bar.total -= self.num_epochs
    self._line(f"group {group + 1}/{self.num_groups} | finished earlier, skipped", force=True)

  def update(self, group: int, epoch: int, loss: float, seconds: float | None = None) -> None:
    """Records that `epoch` (1-based) of `group` (0-based) finished with mean loss `loss`.

    `seconds` is the epoch's duration; None measures it from the previous update's time.
    """
    now = self._clock()
    if seconds is None and self._last_time is not None:
      seconds = now - self._last_time
    self._last_time = now
    if seconds is not None:
      self._durations.append(float(seconds))
      self._bar.rate = 1.0 / max(statistics.median(self._durations), 1e-9)
    # Epochs of this group trained by an earlier run (resumed from a checkpoint): not left.
    self._bar.total -= max(epoch - 1 - self._last_epoch.get(group, 0), 0)
    self._last_epoch[group] = epoch
    self._bar.set_description_str(f"group {group + 1}/{self.num_groups} | epoch {epoch}/"
                                  f"{self.num_epochs} | loss {loss:.4f}", refresh=False)
    self._bar.update(1)  # redraws the bar on a terminal
    last = epoch >= self.num_epochs
    if self.interactive:
      if last:  # the group's last epoch stays on the screen
        self._line(self._text(), force=True)
    else:
      self._line(self._text(), force=last)

  def _text(self) -> str:
    return self._bar.format_meter(**{**self._bar.format_dict, "bar_format": self.BAR_FORMAT})

  def _line(self, line: str, *, force: bool) -> None:
    now = self._clock()
    if self.interactive:
      self._bar.write(line, file=self.stream)
    elif force or now - self._last_print >= self.min_interval:
      self.stream.write(line + "\n")
      self._last_print = now
    self.stream.flush()

  def close(self) -> None:
    """Clears the bar from a terminal."""
    self._bar.close()
    self.stream.flush()
