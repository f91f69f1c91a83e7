"""Ctrl-C (SIGINT) and SIGTERM stop a `run.py` command at once, even inside a compilation.

Python runs a signal handler only between bytecodes of the main thread, so a KeyboardInterrupt
waits for a long C++ call to return: the first epoch's compilation (20-40 s, minutes on a busy
machine) ignored Ctrl-C. And a process started with SIGINT ignored (a background job of a
script) never sees one. `stop_promptly` makes the signal write a byte to a pipe (the C-level
handler does this at once, `signal.set_wakeup_fd`) that a watcher thread reads: it waits for a
save in progress to finish (`saving()`), prints what the workdir keeps and how to resume, and
ends the process. Ending there is safe for the same reasons a SIGKILL is: checkpoints are
written to a temporary folder and renamed when complete, reports and fold-group files are
written atomically, the workdir's lock is an OS lock.

SIGTERM (`timeout`, `kill`, a pod's preemption or a Slurm job's end) is handled the same way,
in every process of a multi-host run, and ends it with status 143 (128 + 15). JAX's own
preemption service, which caught SIGTERM and let the run carry on, is turned off when
`train.maybe_initialize_distributed` starts multi-host JAX. The other processes of a multi-host
run then stop through JAX's coordination service (a missed heartbeat).

Only `run.py` installs it; a library caller of `train.train_and_evaluate` keeps Python's
KeyboardInterrupt (and SIGTERM's default: the process ends).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

_saving = threading.RLock()  # held while a checkpoint, a fold-group file or the reports are written
EXIT_CODE = 128 + signal.SIGINT
_before_exit: list[Callable[[], None]] = []
_received: list[str] = []  # the name of the signal that is stopping the process
SIGNALS = {signal.SIGINT: ("Ctrl-C", 128 + signal.SIGINT),
           signal.SIGTERM: ("SIGTERM", 128 + signal.SIGTERM)}


@contextlib.contextmanager
def saving() -> Iterator[None]:
  """Held around a write that an interrupt should let finish (it ends the run after it)."""
  with _saving:
    yield


def stop_promptly(message: Callable[[], str]) -> None:
  """On SIGINT or SIGTERM: wait for a save in progress, print `message()` to stderr, exit 130
  (SIGINT) or 143 (SIGTERM). `received()` names the signal meanwhile.

  Replaces an inherited 'ignore' too: a signal sent to this process (`kill -INT`) is meant.
  """
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  # The Python-level handler does nothing: the watcher acts (the main thread may be in C++).
  for signum in SIGNALS:
    signal.signal(signum, lambda signum, frame: None)

  def watch() -> None:
    while True:
      data = os.read(read_fd, 64)
      got = [s for s in SIGNALS if s in data]
      if got:
        break
    _received.append(SIGNALS[got[0]][0])
    with _saving:  # a checkpoint being written is finished first
      try:
        text = message()
      except Exception as e:  # pylint: disable=broad-except  # still stop, and say so
        text = f"interrupted ({type(e).__name__} while listing what is kept: {e})"
      sys.stderr.write(f"\n{text}\n")
      sys.stderr.flush()
      sys.stdout.flush()
      for cleanup in _before_exit:
        try:
          cleanup()
        except Exception:  # pylint: disable=broad-except  # best effort: the process ends anyway
          pass
      os._exit(SIGNALS[got[0]][1])  # pylint: disable=protected-access

  threading.Thread(target=watch, name="cmnet-interrupt", daemon=True).start()


def before_exit(cleanup: Callable[[], None]) -> None:
  """`cleanup()` runs (best effort) when `stop_promptly` ends the process: a workdir's run
  marker on object storage deletes itself (a SIGKILL leaves it until it counts as abandoned)."""
  _before_exit.append(cleanup)


def received() -> str:
  """'Ctrl-C' or 'SIGTERM': what is stopping the process ('Ctrl-C' before any signal)."""
  return _received[-1] if _received else "Ctrl-C"


def resume_message(workdir: str | os.PathLike, argv: list[str], mode: str = "train") -> str:
  """What an interrupted `run.py` command leaves in `workdir` and the command that resumes it."""
  signal_name = received()
  import shlex  # pylint: disable=g-import-not-at-top
  from cmnet_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  wd = workdir_lib.Workdir(workdir)
  kept = wd.trained() if wd.path.is_dir() else []
  command = " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *argv])
  if mode == "eval":
    return (f"interrupted ({signal_name}): --mode=eval stopped; {wd.path} keeps its checkpoints, "
            "and each report is the old one or the new one, never half. Run it again: " + command)
  if not kept:
    return (f"interrupted ({signal_name}): stopped before any checkpoint was saved; {wd.path} "
            f"holds no trained state. Run the same command again to start: {command}")
  return (f"interrupted ({signal_name}): stopped; {wd.path} keeps {'; '.join(kept)} (a save in "
          "progress was finished first). To resume from there, run the same command again "
          f"(epochs after the last checkpoint are trained again, with the same result): {command}")
