"""Where a workdir lives: a local folder (pathlib) or object storage (`gs://...`, etils.epath).

A workdir given as a URL (`gs://bucket/run`; any `scheme://`) is an `etils.epath.Path`, which
reads and writes Cloud Storage through gcsfs (`pip install gcsfs`, in requirements.txt; the
`gcs` extra). A local workdir stays a `pathlib.Path`: its writes keep the temporary + fsync +
rename and its `fcntl` lock, which object storage does not have. On object storage:

- a write is one object upload, which readers see whole or not at all (no temporary to rename);
- Orbax writes checkpoints there directly (through tensorstore), a finished step being the one
  with `commit_success.txt` in it (`complete_steps`);
- the lock is a run marker (`RunMarker`): an object created only if absent (a generation
  precondition, `ifGenerationMatch=0`), refreshed by its run every `MARKER_REFRESH_S` and taken
  over only when it has not been refreshed for `MARKER_STALE_S` (a run killed with SIGKILL
  cannot delete its marker); its holder reads it back to be sure it is its own;
- data that are a cache (decoded clips, frame hashes, a generated database) stay on local disk
  on every host (`local_dir`), keyed on the workdir's URL: hosts share no disk.

Environment: `CMNET_LOCAL_DIR` (default `~/.cache/cmnet_jax`) for the host-local folder;
`CMNET_MARKER_STALE_S` / `CMNET_MARKER_REFRESH_S` for the marker's timing; `STORAGE_EMULATOR_HOST`
(gcsfs) and `TENSORSTORE_GCS_HTTP_URL` (Orbax) point both at a local emulator in the tests.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

from cmnet_jax.errors import WorkdirError

MARKER_STALE_S = float(os.environ.get("CMNET_MARKER_STALE_S", "120"))
MARKER_REFRESH_S = float(os.environ.get("CMNET_MARKER_REFRESH_S", "30"))
COMMIT_FILE = "commit_success.txt"  # Orbax's mark of a finished checkpoint on object storage


def is_remote(path: Any) -> bool:
  """Whether `path` names object storage (a URL such as `gs://bucket/run`).

  >>> is_remote('gs://b/run'), is_remote('/tmp/run'), is_remote(Path('runs/x'))
  (True, False, False)
  """
  return "://" in os.fspath(path) if isinstance(path, (str, os.PathLike)) else False


def as_path(path: Any):
  """A `pathlib.Path` for a local path, an `etils.epath.Path` for a URL (never `Path('gs://x')`,
  which collapses the `//` into a local relative path)."""
  if isinstance(path, Path):
    return path
  if is_remote(path):
    from etils import epath  # pylint: disable=g-import-not-at-top
    return epath.Path(os.fspath(path))
  return Path(path)


def local_dir(url: Any) -> Path:
  """This host's own folder for what a workdir at `url` keeps locally (caches, event files)."""
  base = Path(os.environ.get("CMNET_LOCAL_DIR") or Path.home() / ".cache" / "cmnet_jax")
  text = os.fspath(url).rstrip("/")
  slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.split("://", 1)[-1])
  return base / f"{slug[-60:]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def write_bytes(path, data: bytes) -> None:
  """One object upload (object storage shows it whole or not at all); names the object when it
  fails."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
  except OSError as e:
    raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}", str(path)) from e


def complete_steps(directory) -> list[int]:
  """Epochs of the finished checkpoints in a checkpoint folder: sub-folders named by a number
  (Orbax's temporaries have other names); on object storage only those holding Orbax's
  `commit_success.txt` (an interrupted save there has the number's name but no commit file)."""
  d = as_path(directory)
  remote = is_remote(d)
  if remote:
    fresh_listings(d)
  if not d.is_dir():
    return []
  return sorted(int(p.name) for p in d.iterdir()
                if p.name.isdigit() and p.is_dir() and (not remote or (p / COMMIT_FILE).exists()))


def fresh_listings(path) -> None:
  """Drops gcsfs's cached listings, which can miss what another process (or Orbax's tensorstore,
  which writes without gcsfs) wrote since."""
  import fsspec  # pylint: disable=g-import-not-at-top
  fsspec.filesystem(os.fspath(path).split("://", 1)[0]).invalidate_cache()


def uncommitted_steps(directory) -> list:
  """Step folders on object storage that an interrupted save left without a commit file."""
  d = as_path(directory)
  if not is_remote(d):
    return []
  fresh_listings(d)
  if not d.is_dir():
    return []
  return sorted((p for p in d.iterdir()
                 if p.name.isdigit() and p.is_dir() and not (p / COMMIT_FILE).exists()),
                key=lambda p: int(p.name))


def _gcs(path) -> tuple[Any, str, str]:
  """(gcsfs filesystem, bucket, object name) of a `gs://` path."""
  import fsspec  # pylint: disable=g-import-not-at-top
  text = os.fspath(path)
  scheme, rest = text.split("://", 1)
  if scheme != "gs":
    raise WorkdirError(f"{text}: a run marker on {scheme}:// is not implemented (gs:// is); "
                       "use a gs:// or a local --workdir")
  bucket, _, name = rest.partition("/")
  return fsspec.filesystem("gs"), bucket, name


class RunMarker:
  """The lock of a workdir on object storage: `with RunMarker(path, holder): ...`.

  Created with `ifGenerationMatch=0` (Cloud Storage refuses the upload if the object exists, so
  of two commands starting at once one wins), read back (its token must be ours: a store that
  ignores preconditions, such as the test emulator, is caught there too), refreshed by a thread
  every `refresh_s` with `ifGenerationMatch=<our generation>`, deleted when the run ends. A
  marker not refreshed for `stale_s` (its run was killed, or its host lost) is taken over with
  `ifGenerationMatch=<its generation>`.
  """

  def __init__(self, path, holder: str, *, stale_s: float = None, refresh_s: float = None):
    self.path = path
    self.holder = holder
    self.stale_s = MARKER_STALE_S if stale_s is None else stale_s
    self.refresh_s = MARKER_REFRESH_S if refresh_s is None else refresh_s
    self.token = uuid.uuid4().hex
    self.fs, self.bucket, self.name = _gcs(path)
    self._generation: Optional[str] = None
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def _payload(self) -> bytes:
    return json.dumps({"holder": self.holder, "token": self.token,
                       "refreshed": datetime.datetime.now(datetime.timezone.utc).isoformat()
                       }).encode()

  def _upload(self, if_generation: str) -> str:
    """Uploads the marker if its generation is `if_generation` ('0': absent); its new
    generation. FileExistsError when the precondition fails (HTTP 412)."""
    location = self.fs._location  # pylint: disable=protected-access  # the endpoint (or emulator)
    out = self.fs.call("POST", f"{location}/upload/storage/v1/b/{{}}/o", self.bucket,
                       uploadType="media", name=self.name, ifGenerationMatch=if_generation,
                       data=self._payload(), json_out=True)
    return str(out.get("generation", ""))

  def _read(self) -> tuple[Optional[dict], Optional[str], float]:
    """(content, generation, seconds since it was last written) of the marker; (None, None, 0)
    when there is none."""
    try:
      self.fs.invalidate_cache(f"{self.bucket}/{self.name}")
      info = self.fs.info(f"{self.bucket}/{self.name}")
      raw = self.fs.cat_file(f"{self.bucket}/{self.name}")
    except FileNotFoundError:
      return None, None, 0.0
    try:
      content = json.loads(raw)
    except ValueError:
      content = {"holder": raw[:200].decode(errors="replace"), "token": ""}
    updated = info.get("updated") or info.get("timeCreated")
    age = 0.0
    if updated:
      when = datetime.datetime.fromisoformat(str(updated).replace("Z", "+00:00"))
      age = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
    return content, str(info.get("generation", "")), age

  def _refuse(self, content: dict, age: float) -> WorkdirError:
    holder = content.get("holder") or "another run"
    return WorkdirError(
        f"{os.fspath(self.path).rsplit('/', 1)[0]} is in use by {holder} "
        f"(its run marker {self.path} was refreshed {age:.0f} s ago); wait for it to finish, or "
        f"pass another --workdir. A run killed without ending leaves its marker: it counts as "
        f"abandoned {self.stale_s:.0f} s after its last refresh (CMNET_MARKER_STALE_S), and the "
        f"next command then takes it over")

  def acquire(self) -> None:
    content, generation, age = self._read()
    if content is not None and age < self.stale_s:
      raise self._refuse(content, age)
    try:
      self._generation = self._upload("0" if content is None else generation)
    except FileExistsError:  # another command created or refreshed it first
      content, _, age = self._read()
      raise self._refuse(content or {}, age) from None
    mine, _, _ = self._read()
    if not mine or mine.get("token") != self.token:
      raise self._refuse(mine or {}, 0.0)
    if content is not None:
      print(f"note: took over the run marker {self.path} of {content.get('holder')}, not "
            f"refreshed for {age:.0f} s (its run is gone)")
    self._thread = threading.Thread(target=self._refresh, name="cmnet-run-marker", daemon=True)
    self._thread.start()
    from cmnet_jax import interrupt  # pylint: disable=g-import-not-at-top
    interrupt.before_exit(self.release)  # Ctrl-C / SIGTERM: the marker goes with the run

  def _refresh(self) -> None:
    while not self._stop.wait(self.refresh_s):
      try:
        self._generation = self._upload(self._generation or "0")
      except FileExistsError:
        print(f"warning: the run marker {self.path} was taken over by another command while this "
              "run held it (this run went unrefreshed for longer than CMNET_MARKER_STALE_S)")
        return
      except Exception as e:  # pylint: disable=broad-except  # a network hiccup: retried next time
        print(f"warning: could not refresh the run marker {self.path} ({type(e).__name__}: {e})")

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    mine, _, _ = self._read()
    if mine and mine.get("token") == self.token:
      try:
        self.fs.rm(f"{self.bucket}/{self.name}")
      except FileNotFoundError:
        pass

  def __enter__(self) -> "RunMarker":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
