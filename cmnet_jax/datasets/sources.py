"""The missing-data message `run.py` prints: where to request a database and how to lay it out.

Derived from the declaration in each reader module (`registry.DatabaseInfo`); nothing is spelled
here. `SOURCES` (name -> declaration) is read on first use, so importing this module stays cheap.

>>> from cmnet_jax.datasets import sources
>>> 'CASME II' in sources.describe('casme2') and 'smic' in sources.SOURCES
True
"""
from typing import Any

from cmnet_jax.datasets import registry


def describe(name: str) -> str:
  """A paragraph: what the database is, where to request it, and how to lay it out."""
  return registry.describe(name)


def __getattr__(name: str) -> Any:
  if name == "SOURCES":
    return registry.databases()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
