"""TFDS builders for the licensed micro-expression databases (manual download) and synthetic set.

One builder per declared licensed database (`registry.databases()`), generated from its
declaration and registered as `cmnet_<name>` (`Casme2` is `cmnet_casme2`, ...). Each database
must be requested from its owners and unpacked by the user into the manual folder
(`<data_dir>/downloads/manual/` unless `download_config.manual_dir` says otherwise), laid out as
the owners ship it (docs/datasets.md). The synthetic builder needs no download: it generates the
CASME II-format tree itself (idempotently) and adds the true per-frame intensity.

    >>> from cmnet_jax.datasets.tfds import builders
    >>> builders.Casme2.name, builders.Synthetic.name, builders.Megc2019.DEFAULT_CLASSES
    ('cmnet_casme2', 'cmnet_synthetic', '3class')
"""
import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import registry
from cmnet_jax.datasets import synthetic
from cmnet_jax.datasets.tfds.base import MerBuilder, mer_config

_MANUAL = """
Unpack it into the manual folder (`<data_dir>/downloads/manual/`, or pass
`download_config=tfds.download.DownloadConfig(manual_dir=...)`) so that it holds:
"""


def manual_download_instructions(info: registry.DatabaseInfo) -> str:
  """Where to request the database and what the manual folder must hold, from its declaration."""
  return (f"Request {info.title} from {info.request}." + _MANUAL
          + "".join(f"  {entry}\n" for entry in info.layout))


def _database_builder(info: registry.DatabaseInfo) -> type[MerBuilder]:
  """The builder class of a declared database (registered with TFDS as `cmnet_<name>`)."""
  schemes = ", ".join(f"'{s}'" + (" (default)" if s == info.default_classes else "")
                      for s in info.schemes)
  return type(info.name.capitalize(), (MerBuilder,), {
      "__module__": __name__, "__doc__": f"{info.title}: class schemes {schemes}.",
      "name": f"cmnet_{info.name}", "DATABASE": info.name,
      "DEFAULT_CLASSES": info.default_classes,
      "MANUAL_DOWNLOAD_INSTRUCTIONS": manual_download_instructions(info)})


DATABASE_BUILDERS = {name: _database_builder(info)
                     for name, info in registry.databases().items() if not info.generated}
globals().update({cls.__name__: cls for cls in DATABASE_BUILDERS.values()})  # Casme2, Samm, ...


def _subject_key(subject: str) -> str:
  """'sub01', '01', '1' -> '1' (the synthetic intensity file and the reader write them apart)."""
  text = subject[3:] if subject.lower().startswith("sub") else subject
  return str(int(text)) if text.isdigit() else text


class Synthetic(MerBuilder):
  """The built-in synthetic CASME II-format set, plus the true per-frame intensity `[time]`.

  Build with `Synthetic(synthetic_config=config.synthetic, num_frames=..., image_size=...)`
  (or `config=Synthetic.config_for(...)`): the config's name carries a hash of the generator
  settings, so sets generated with different settings never mix. The CASME II-format tree is
  generated (or reused) under `<data_dir>/downloads/cmnet_synthetic_<hash>/`.
  """
  name = "cmnet_synthetic"
  DATABASE, DEFAULT_CLASSES = "synthetic", "5class"
  BUILDER_CONFIGS = []

  def __init__(self, *, synthetic_config: Mapping[str, Any] | None = None, **kwargs: Any):
    self._settings = None
    if synthetic_config is not None:
      self._settings = synthetic.validate_settings(synthetic_config)
      if kwargs.get("config") is None:
        kwargs["config"] = self.config_for(
            synthetic_config, kwargs.pop("num_frames", None) or 9,
            kwargs.pop("image_size", None) or self._settings["image_size"],
            kwargs.pop("classes", None) or "")
    super().__init__(**kwargs)

  @staticmethod
  def settings_hash(synthetic_config: Mapping[str, Any]) -> str:
    settings = synthetic.validate_settings(synthetic_config)
    text = json.dumps({"settings": settings, "version": synthetic.GENERATOR_VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]

  @classmethod
  def config_for(cls, synthetic_config: Mapping[str, Any], num_frames: int = 9,
                 image_size: int | None = None, classes: str = ""):
    """The builder config for these generator settings (name ends with their hash)."""
    size = image_size or int(synthetic_config["image_size"])
    return mer_config(num_frames, size, classes, suffix=f"_{cls.settings_hash(synthetic_config)}")

  def _features(self) -> dict[str, Any]:
    features = super()._features()
    features["intensity"] = tfds.features.Tensor(shape=(self.builder_config.num_frames,),
                                                 dtype=np.float32)
    return features

  def _source_root(self, dl_manager: tfds.download.DownloadManager) -> str:
    if self._settings is None:
      raise ValueError(f"{self.name}: generating needs the generator settings: pass "
                       f"synthetic_config=config.synthetic to the builder")
    tree = os.path.join(os.fspath(dl_manager.download_dir),
                        f"cmnet_synthetic_{self.settings_hash(self._settings)}")
    self._truth = {(_subject_key(s), f): v
                   for (s, f), v in synthetic.load_true_intensity(
                       synthetic.generate(self._settings, tree)).items()}
    return tree

  def _example(self, record) -> dict[str, Any]:
    example = super()._example(record)
    positions, _ = frames_lib.sample_frame_indices(len(record.frame_paths), record.apex_index,
                                                   self.builder_config.num_frames)
    truth = self._truth[(_subject_key(record.subject), record.clip_id)]
    numbers = [frames_lib.frame_number(record.frame_paths[p]) for p in positions]
    example["intensity"] = np.array([truth[n] for n in numbers], np.float32)
    return example


__all__ = (["DATABASE_BUILDERS", "Synthetic", "manual_download_instructions"]
           + sorted(cls.__name__ for cls in DATABASE_BUILDERS.values()))
