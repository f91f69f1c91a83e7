"""Packages whose public names are imported on first use (PEP 562 module `__getattr__`).

A package lists the submodule each public name lives in and gets `__getattr__`, `__dir__` and
`__all__` from `exports`, so importing the package stays cheap and never pulls in a heavy or
optional submodule until one of its names is used:

    __getattr__, __dir__, __all__ = lazy.exports(__name__, {"loso_folds": "index", ...})

>>> getattr_, _, names = exports('cmnet_jax.datasets', {'loso_folds': 'index'})
>>> getattr_('loso_folds').__module__, names
('cmnet_jax.datasets.index', ['loso_folds'])
"""
import importlib
import sys
from typing import Any, Callable, Mapping


def exports(package: str, names: Mapping[str, str]
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
  """(`__getattr__`, `__dir__`, `__all__`) for `package`, whose public name n is defined in its
  submodule `names[n]`."""
  names = dict(names)

  def __getattr__(name: str) -> Any:  # pylint: disable=invalid-name
    if name in names:
      return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def __dir__() -> list[str]:  # pylint: disable=invalid-name
    return sorted(set(vars(sys.modules[package])) | set(names))

  return __getattr__, __dir__, sorted(names)
