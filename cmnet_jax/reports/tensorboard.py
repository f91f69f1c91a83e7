"""TensorBoard events, written by tensorboardX's event file writer, streamed per epoch.

Every training session that writes scalars adds one event file to the run's `tensorboard/`
folder, named by tensorboardX (`events.out.tfevents.<seconds>.<host>` + `.<nanoseconds>` and
the writer's suffix); TensorBoard reads a folder's files in name order as one run. The writer is
`tensorboardX.event_file_writer.EventsWriter`, the file backend of its `SummaryWriter` without
the background queue, so that `flush()` puts each epoch on disk before the checkpoint that
follows it. It is made on the first write only: a run that writes nothing (re-printing, eval)
adds no file. A resumed run marks the step it resumes from (a `SessionLog.START`, as
`SummaryWriter(purge_step=...)` writes), so TensorBoard drops the steps a killed session wrote
after its last checkpoint (they are trained and written again). A folder written before holds
one `events.out.tfevents.cmnet_jax` file: a resume renames it to sort before the new files
(`LEGACY_RENAME`), else TensorBoard would read it last and show its stale steps again.

`read_events` reads the scalars back (a file, or a folder in TensorBoard's order). No library
reader is installed (tensorboardX only writes; `tensorboard` is not a dependency), so it parses
the TFRecord framing itself, stopping at a record cut off by a kill.
"""
from __future__ import annotations

import math
import os
import stat
import struct
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

PREFIX = "events.out.tfevents."
EVENT_FILE = PREFIX + "cmnet_jax"  # the one file the writer before tensorboardX's kept
LEGACY_RENAME = PREFIX + "0000000000.cmnet_jax"  # sorts before every tensorboardX file


def _records(raw: bytes):
  """Payload of each intact record, stopping at the first damaged one."""
  from tensorboardX.record_writer import masked_crc32c  # pylint: disable=import-outside-toplevel
  pos = 0
  while pos + 12 <= len(raw):
    header = raw[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    end = pos + 12 + length + 4
    if (end > len(raw) or struct.unpack("<I", raw[pos + 8:pos + 12])[0] != masked_crc32c(header)
        or struct.unpack("<I", raw[end - 4:end])[0] != masked_crc32c(raw[pos + 12:end - 4])):
      return
    yield raw[pos + 12:end - 4]
    pos = end


def event_files(logdir: str | os.PathLike) -> list[Path]:
  """The event files of a folder in the order TensorBoard reads them (by name)."""
  return sorted((p for p in Path(logdir).iterdir() if p.name.startswith(PREFIX)),
                key=lambda p: p.name)


def read_events(path: str | os.PathLike) -> list[tuple[int, str, float]]:
  """`(step, tag, value)` of every scalar in an event file, or in every event file of a folder
  (in TensorBoard's order), in file order; a `SessionLog.START` is listed as
  `(step, '<start>', nan)`."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  path = Path(path)
  out = []
  for file in event_files(path) if path.is_dir() else [path]:
    for payload in _records(file.read_bytes()):
      event = event_pb2.Event.FromString(payload)
      if event.HasField("session_log") and event.session_log.status == event.session_log.START:
        out.append((event.step, "<start>", float("nan")))
      out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
  return out


class ScalarWriter:
  """Writes `{name: value}` scalars per step into `logdir` (a tensorboardX `EventsWriter`, made
  on the first write; `suffix` ends the file's name, e.g. one per process).

  >>> import tempfile
  >>> d = tempfile.mkdtemp()
  >>> with ScalarWriter(d) as tb:
  ...   tb.write(1, {'loss/total': 1.25, 'loss/ce': np.float32(0.5)})
  >>> with ScalarWriter(d) as tb:   # a resumed run: its own file, after a restart mark
  ...   tb.restart(2); tb.write(2, {'loss/total': 1.0})
  >>> len(event_files(d)), read_events(d)[-2:]
  (2, [(2, '<start>', nan), (2, 'loss/total', 1.0)])
  """

  def __init__(self, logdir: str | os.PathLike, *, suffix: str = "", last_step: int = 0):
    """`last_step`: the run's final step, where `results.finish` writes its summary."""
    self.logdir = Path(logdir)
    self.suffix = suffix
    self.last_step = last_step
    self._writer = None
    self._restart = None
    self._earlier = False
    # At once, before a run trains anything: its folder, and no link among the event files.
    self.logdir.mkdir(parents=True, exist_ok=True)
    for path in event_files(self.logdir):
      self._refuse_other_than_a_plain_file(path)

  @staticmethod
  def _refuse_other_than_a_plain_file(path: Path) -> None:
    """A link (`events... -> ~/.bashrc`), a hard link or a non-file among the event files is
    not what a run wrote: refused, naming it (issue 23)."""
    from cmnet_jax.errors import WorkdirError  # pylint: disable=import-outside-toplevel
    st = os.lstat(path)
    what = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
            "not a regular file" if not stat.S_ISREG(st.st_mode) else
            f"a file with {st.st_nlink} hard links" if st.st_nlink > 1 else "")
    if what:
      raise WorkdirError(f"{path} is {what}, not the TensorBoard event file a run writes; "
                         f"nothing was written through it. Remove it (rm {path}) and run "
                         "the command again")

  def _open(self):
    if self._writer is None:
      # pylint: disable-next=import-outside-toplevel
      from tensorboardX.event_file_writer import EventsWriter
      legacy = self.logdir / (EVENT_FILE + self.suffix)
      if legacy.is_file() and not legacy.is_symlink():
        legacy.rename(self.logdir / (LEGACY_RENAME + self.suffix))
      self._earlier = any(p.stat().st_size for p in event_files(self.logdir))
      # tensorboardX names the file by the second and the host; the nanoseconds after them keep
      # two sessions of one second apart (it would truncate the other's file), in time order.
      self._writer = EventsWriter(str(self.logdir / "events"),
                                  f".{time.time_ns() % 10**9:09d}{self.suffix}")
    return self._writer

  def restart(self, step: int) -> None:
    """Marks a resume at `step` (written with the next scalars, if an earlier session wrote
    events here): TensorBoard forgets what an earlier session wrote at steps >= `step`."""
    self._restart = int(step)

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Adds each scalar at `step` (one event); non-finite values are written as NaN (gaps)."""
    from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
    from tensorboardX.proto import summary_pb2  # pylint: disable=import-outside-toplevel
    values = []
    for name, value in scalars.items():
      v = np.asarray(value)
      if v.size != 1:
        raise ValueError(f"tensorboard scalar {name!r} must hold one value, got shape {v.shape}")
      v = float(v.reshape(()))
      values.append(summary_pb2.Summary.Value(tag=name,
                                              simple_value=v if math.isfinite(v) else math.nan))
    writer = self._open()
    if self._restart is not None and self._earlier:  # a restart mark, as SummaryWriter's
      writer.write_event(event_pb2.Event(   # purge_step writes it
          wall_time=time.time(), step=self._restart,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    self._restart = None
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                       summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    """Pushes what was written to the disk (TensorBoard sees it)."""
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

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
