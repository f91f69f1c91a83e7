"""TensorBoard events: one event file per run, streamed per epoch, appended to by a resume.

tensorboardX's `SummaryWriter` starts a new file (named by the time) every time it is opened,
so every resume or re-print would add one. `ScalarWriter` writes the same TFRecord framing and
`Event` protos (from tensorboardX) itself, to one file named once (`EVENT_FILE`), opened for
appending on the first write only: a run that writes nothing (re-printing, eval) makes no file.
A record cut off by a kill is dropped when the file is next opened, and a resumed run first
writes a `SessionLog.START` at the step it resumes from, so TensorBoard drops the steps the killed
run wrote after its last checkpoint (they are trained and written again). `read_events` reads a
file back.
"""
from __future__ import annotations

import errno
import math
import os
import stat
import struct
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

EVENT_FILE = "events.out.tfevents.cmnet_jax"


def _crc(data: bytes) -> int:
  from tensorboardX.record_writer import masked_crc32c  # pylint: disable=import-outside-toplevel
  return masked_crc32c(data)


def _records(raw: bytes):
  """(end offset, payload) of each intact record, stopping at the first damaged one."""
  pos = 0
  while pos + 12 <= len(raw):
    header = raw[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    end = pos + 12 + length + 4
    if (end > len(raw) or struct.unpack("<I", raw[pos + 8:pos + 12])[0] != _crc(header)
        or struct.unpack("<I", raw[end - 4:end])[0] != _crc(raw[pos + 12:end - 4])):
      return
    yield end, raw[pos + 12:end - 4]
    pos = end


def read_events(path: str | os.PathLike) -> list[tuple[int, str, float]]:
  """`(step, tag, value)` of every scalar in an event file, in file order; a `SessionLog.START`
  is listed as `(step, '<start>', nan)`."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  out = []
  for _, payload in _records(Path(path).read_bytes()):
    event = event_pb2.Event.FromString(payload)
    if event.HasField("session_log"):
      out.append((event.step, "<start>", float("nan")))
    out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
  return out


class ScalarWriter:
  """Writes `{name: value}` scalars per step to `logdir/EVENT_FILE<suffix>` (created on first use).

  >>> import tempfile
  >>> d = tempfile.mkdtemp()
  >>> with ScalarWriter(d) as tb:
  ...   tb.write(1, {'loss/total': 1.25, 'loss/ce': np.float32(0.5)})
  >>> with ScalarWriter(d) as tb:   # a resumed run: the same file, appended
  ...   tb.restart(2); tb.write(2, {'loss/total': 1.0})
  >>> os.listdir(d), read_events(os.path.join(d, EVENT_FILE))[-2:]
  (['events.out.tfevents.cmnet_jax'], [(2, '<start>', nan), (2, 'loss/total', 1.0)])
  """

  def __init__(self, logdir: str | os.PathLike, *, suffix: str = "", last_step: int = 0):
    """`last_step`: the run's final step, where `results.finish` writes its summary."""
    self.path = Path(logdir) / (EVENT_FILE + suffix)
    self.last_step = last_step
    self._file = None
    self._had_events = False
    self._restart = None
    # At once, before a run trains anything: its folder, and no link where the file goes.
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._refuse_other_than_a_plain_file()

  def _refuse_other_than_a_plain_file(self, st: os.stat_result | None = None) -> None:
    """A link (`events... -> ~/.bashrc`), a hard link or a non-file where the event file is
    would have been truncated and appended to; refused, naming it (issue 23)."""
    from cmnet_jax.errors import WorkdirError  # pylint: disable=import-outside-toplevel
    if st is None:
      try:
        st = os.lstat(self.path)
      except FileNotFoundError:
        return
    what = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
            "not a regular file" if not stat.S_ISREG(st.st_mode) else
            f"a file with {st.st_nlink} hard links" if st.st_nlink > 1 else "")
    if what:
      raise WorkdirError(f"{self.path} is {what}, not the TensorBoard event file a run writes; "
                         f"nothing was written through it. Remove it (rm {self.path}) and run "
                         "the command again")

  def _open(self):
    if self._file is None:
      from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
      self.path.parent.mkdir(parents=True, exist_ok=True)
      try:  # never through a link, never blocking on a FIFO
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o666)
      except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR):
          self._refuse_other_than_a_plain_file()
        raise
      try:
        self._refuse_other_than_a_plain_file(os.fstat(fd))
      except BaseException:
        os.close(fd)
        raise
      self._file = os.fdopen(fd, "r+b")  # pylint: disable=consider-using-with
      # Keep the intact records; drop a record cut off by a kill.
      size = max((end for end, _ in _records(self._file.read())), default=0)
      self._file.truncate(size)
      self._file.seek(size)
      self._had_events = size > 0
      if not size:
        self._event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    return self._file

  def _event(self, event) -> None:
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    self._open().write(header + struct.pack("<I", _crc(header)) + data
                       + struct.pack("<I", _crc(data)))

  def restart(self, step: int) -> None:
    """Marks a resume at `step` (written with the next scalars, if an earlier run wrote the
    file): TensorBoard forgets what an earlier run wrote at steps >= `step`."""
    self._restart = int(step)

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Adds each scalar at `step` (one event); non-finite values are written as NaN (gaps)."""
    from tensorboardX.proto import event_pb2, summary_pb2  # pylint: disable=import-outside-toplevel
    values = []
    for name, value in scalars.items():
      v = np.asarray(value)
      if v.size != 1:
        raise ValueError(f"tensorboard scalar {name!r} must hold one value, got shape {v.shape}")
      v = float(v.reshape(()))
      values.append(summary_pb2.Summary.Value(tag=name,
                                              simple_value=v if math.isfinite(v) else math.nan))
    self._open()
    if self._restart is not None and self._had_events:
      self._event(event_pb2.Event(wall_time=time.time(), step=self._restart, session_log=(
          event_pb2.SessionLog(status=event_pb2.SessionLog.START))))
    self._restart = None
    self._event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    """Pushes what was written to the disk (TensorBoard sees it)."""
    if self._file is not None:
      self._file.flush()
      os.fsync(self._file.fileno())

  def close(self) -> None:
    if self._file is not None:
      self.flush()
      self._file.close()
      self._file = None

  def __enter__(self) -> "ScalarWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def epoch_scalars(metrics: Mapping[str, np.ndarray], folds: Sequence[str | None], *,
                  learning_rate: float, mean_tag: str = "mean") -> dict[str, float]:
  """One epoch's scalars: `<metric>/<mean_tag>` over the folds, `<metric>/fold_<name>` per fold.

  Args:
    metrics: `{name: [slots, steps]}` from the training epoch ('loss', each loss term and
      metric, 'accuracy' = training-batch accuracy, written as 'accuracy_training_batch').
    folds: each slot's fold name (its held-out subject), None for a padding slot.
    learning_rate: the schedule's value at the epoch's last step.

  >>> epoch_scalars({'loss': np.array([[1., 3.], [5., 5.]])}, ['s1', None], learning_rate=0.1)
  {'learning_rate': 0.1, 'loss/mean': 2.0, 'loss/fold_s1': 2.0}
  """
  out = {"learning_rate": float(learning_rate)}
  real = [slot for slot, name in enumerate(folds) if name is not None]
  for key, value in metrics.items():
    name = "accuracy_training_batch" if key == "accuracy" else key
    per_fold = np.asarray(value, np.float64).mean(axis=1)
    out[f"{name}/{mean_tag}"] = float(np.mean(per_fold[real]))
    out.update({f"{name}/fold_{folds[slot]}": float(per_fold[slot]) for slot in real})
  return out
