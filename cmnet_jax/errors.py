"""The errors a run reports to the user as one message (no traceback): `run.py` prints them.

Kept apart from the modules that raise them so that a reader of a workdir (`predict`) or the
command line (`cli`) can catch them without importing the training loop.
"""


class RunError(ValueError):
  """A run cannot go on as configured (the message says what to change)."""


class WorkdirError(RunError):
  """The workdir cannot be used as asked: names the file and what to do."""


class NonFiniteLossError(FloatingPointError):
  """A fold's loss became NaN or infinite; the message says which checkpoints exist."""
