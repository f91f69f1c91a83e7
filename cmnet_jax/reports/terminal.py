"""Terminal output: the final results table and a progress printer (fold group, epoch, loss, ETA).

Plain text only. On a terminal the progress line is redrawn in place ('\\r'); when stdout is a
file or a pipe (cluster logs) it prints whole lines, at most one every `min_interval` seconds
plus the last epoch of each group, so logs stay short and readable.
"""
from __future__ import annotations

import datetime
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


def _clock(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class Progress:
  """Prints `group g/G | epoch e/E | loss x | s/epoch | ETA h:mm:ss` as training goes.

  The ETA is the median seconds per epoch seen so far (robust to the first epoch's compile time)
  times the epochs left in this and the later, unfinished groups.

  >>> import io
  >>> out = io.StringIO()
  >>> p = Progress(2, 3, stream=out)
  >>> p.update(0, 1, 1.5, seconds=10.0)
  >>> print(out.getvalue(), end='')
  group 1/2 | epoch 1/3 | loss 1.5000 | 10.0 s/epoch | ETA 0:00:50
  """

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
    self._done: set[int] = set()
    self._last_print = -float("inf")
    self._last_time: float | None = None
    self._open_line = False
    isatty = getattr(self.stream, "isatty", None)
    self.interactive = bool(isatty and isatty())

  def eta(self, group: int, epoch: int) -> float | None:
    """Seconds left after `epoch` of `group` (None before any epoch was timed)."""
    if not self._durations:
      return None
    later = sum(1 for g in range(group + 1, self.num_groups) if g not in self._done)
    left = (self.num_epochs - epoch) + later * self.num_epochs
    return statistics.median(self._durations) * left

  def skip(self, group: int) -> None:
    """Marks `group` as finished by an earlier run (resumed workdir)."""
    self._done.add(group)
    self._write(f"group {group + 1}/{self.num_groups} | finished earlier, skipped", force=True)

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
    if epoch >= self.num_epochs:
      self._done.add(group)
    eta = self.eta(group, epoch)
    rate = f"{seconds:.1f} s/epoch" if seconds is not None else "-- s/epoch"
    self._write(f"group {group + 1}/{self.num_groups} | epoch {epoch}/{self.num_epochs} | "
                f"loss {loss:.4f} | {rate} | ETA {_clock(eta) if eta is not None else '--'}",
                force=epoch >= self.num_epochs)

  def _write(self, line: str, *, force: bool) -> None:
    now = self._clock()
    if self.interactive:
      self.stream.write("\r" + line.ljust(79))
      self._open_line = True
      if force:
        self.stream.write("\n")
        self._open_line = False
    elif force or now - self._last_print >= self.min_interval:
      self.stream.write(line + "\n")
      self._last_print = now
    self.stream.flush()

  def close(self) -> None:
    """Ends an open in-place line."""
    if self._open_line:
      self.stream.write("\n")
      self._open_line = False
    self.stream.flush()
