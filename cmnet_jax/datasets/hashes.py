"""Content hashes of frame files, cached on (path, size, mtime_ns) as git's index caches them.

The data fingerprint a workdir records (`input_pipeline.fingerprints`) covers what each frame
file holds, not only its name and size: frames replaced by other pixels at the same byte size
(re-aligned BMPs) change it. Hashing every frame on every command would cost a read of the whole
database, so each file's sha256 is kept in `<workdir>/data/frame-hashes.json` with the file's
size and mtime_ns; a re-check whose stat matches costs one `os.stat`.

Like git, a file whose mtime is within `RACY_SECONDS` of the moment it was hashed is hashed but
not cached: a write in the same clock tick could keep its size and mtime. A file replaced while
keeping both its size and its mtime (`cp -p`, `rsync -t` from another copy) is not read again;
delete the cache file to hash everything anew.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from cmnet_jax.datasets.index import DatasetError

RACY_SECONDS = 2.0
_FORMAT = 1


def hash_file(path: str) -> str:
  """sha256 hex digest of a file's bytes; a DatasetError naming an unreadable file."""
  try:
    with open(path, "rb") as f:
      return hashlib.file_digest(f, "sha256").hexdigest()
  except OSError as e:
    raise DatasetError(f"cannot read frame file {path!r} ({e.strerror or e}); expected a "
                       f"readable image (check its permissions)") from None


class HashCache:
  """sha256 of files, cached on (absolute path, size, mtime_ns); `save()` writes the entries
  used since it was opened (entries of files no longer asked for are dropped).

  >>> import tempfile
  >>> folder = tempfile.mkdtemp()
  >>> p = os.path.join(folder, 'a.bin'); _ = open(p, 'wb').write(b'abc')
  >>> HashCache(None).digest(p)[:12]
  'ba7816bf8f01'
  """

  def __init__(self, path: str | os.PathLike | None):
    self.path = Path(path) if path is not None else None
    self._old: dict[str, list] = {}
    self._new: dict[str, list] = {}
    self._changed = False
    if self.path is not None:
      try:
        data = json.loads(self.path.read_text())
        if isinstance(data, dict) and data.get("format") == _FORMAT:
          self._old = {k: v for k, v in data.get("files", {}).items()
                       if isinstance(v, list) and len(v) == 3}
      except (OSError, ValueError):
        pass  # absent or damaged: a cache, every file is hashed again

  def digest(self, path: str) -> str:
    """The file's sha256: from the cache when its size and mtime_ns are unchanged."""
    key = os.path.abspath(path)
    try:
      st = os.stat(path)
    except OSError as e:
      raise DatasetError(f"cannot read frame file {path!r} ({e.strerror or e})") from None
    entry = self._new.get(key) or self._old.get(key)
    if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
      self._new[key] = entry
      return entry[2]
    now = time.time_ns()
    digest = hash_file(path)
    if now - st.st_mtime_ns > RACY_SECONDS * 1e9:
      self._new[key] = [st.st_size, st.st_mtime_ns, digest]
      self._changed = True
    return digest

  def save(self) -> None:
    """Writes the cache (atomically) if it changed; nothing without a path."""
    if self.path is None or not (self._changed or set(self._old) != set(self._new)):
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"format": _FORMAT, "files": self._new}, sort_keys=True))
    os.replace(tmp, self.path)
