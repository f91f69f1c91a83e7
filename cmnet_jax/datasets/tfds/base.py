"""The shared TFDS builder: one example per micro-expression clip, read with our own readers.

Works with tensorflow-datasets installed *without* TensorFlow: features are plain tensors
(`Video`/`Image` features need TensorFlow to encode), files are `array_record`, and prepared data
is read back into NumPy with `builder.as_data_source()` / `tfds.data_source(...)` /
`tfds.builder_from_directory(path).as_data_source()`.

Features of every example:
  frames      uint8 `[time, image_size, image_size, 3]`, T frames anchored on onset/apex/offset
  label       ClassLabel under the config's class scheme
  subject, clip_id, dataset   text (as the reader names them)
  apex_index  int32, the apex's position in `frames` (T // 2)
"""
import dataclasses
import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import registry


@dataclasses.dataclass(eq=False)
class MerConfig(tfds.core.BuilderConfig):
  """Frames per clip, frame size and class scheme ('' = the database default)."""
  num_frames: int = 9
  image_size: int = 64
  classes: str = ""


def mer_config(num_frames: int = 9, image_size: int = 64, classes: str = "", *,
               suffix: str = "") -> MerConfig:
  """A config named after its settings, e.g. `mer_config(9, 64)` -> 'default_t9_s64'.

  >>> mer_config(5, 16, '3class').name
  '3class_t5_s16'
  """
  if num_frames < 1 or image_size < 1:
    raise ValueError(f"need num_frames >= 1 and image_size >= 1, got {num_frames}, {image_size}")
  name = f"{classes or 'default'}_t{num_frames}_s{image_size}{suffix}"
  return MerConfig(name=name, num_frames=num_frames, image_size=image_size, classes=classes,
                   description=f"{num_frames} frames of {image_size}x{image_size}, classes "
                               f"{classes or 'default'}")


class MerBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder: subclasses set `name`, `DATABASE`, `DEFAULT_CLASSES` and the instructions.

  The settings come from `config=` (a `MerConfig` or the name of one in `BUILDER_CONFIGS`) or
  from the keyword arguments `num_frames`, `image_size`, `classes` (a config is made for them).
  The unpacked database is `download_config.manual_dir` (default `<data_dir>/downloads/manual`).
  """
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [mer_config(9, 64), mer_config(9, 112)]
  DATABASE = ""
  DEFAULT_CLASSES = ""

  def __init__(self, *, num_frames: int | None = None, image_size: int | None = None,
               classes: str | None = None, config: Any = None, annotation: str | None = None,
               **kwargs: Any):
    self._annotation = annotation or None  # annotation file if not at its known place
    if (num_frames, image_size, classes) != (None, None, None):
      if config is not None:
        raise ValueError(f"{self.name}: give either config= or num_frames/image_size/classes")
      config = mer_config(num_frames or 9, image_size or 64, classes or "")
    super().__init__(config=config, **kwargs)

  @classmethod
  def class_names(cls, classes: str = "") -> tuple[str, ...]:
    """Label names of a class scheme ('' = the database's default), in label order."""
    try:
      return registry.get(cls.DATABASE).class_names(classes or cls.DEFAULT_CLASSES)
    except index_lib.DatasetError as e:
      raise ValueError(f"{cls.name}: {e}") from None

  def _features(self) -> dict[str, Any]:
    c = self.builder_config
    return {
        "frames": tfds.features.Tensor(shape=(c.num_frames, c.image_size, c.image_size, 3),
                                       dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
        "label": tfds.features.ClassLabel(names=self.class_names(c.classes)),
        "subject": tfds.features.Text(),
        "clip_id": tfds.features.Text(),
        "dataset": tfds.features.Text(),
        "apex_index": tfds.features.Scalar(dtype=np.int32),
    }

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` wants a package folder of metadata files.
    return tfds.core.DatasetInfo(
        builder=self, description=(self.__doc__ or "").strip(),
        features=tfds.features.FeaturesDict(self._features()), supervised_keys=("frames", "label"),
        homepage="https://doi.org/10.1609/aaai.v37i1.25083")

  def _source_root(self, dl_manager: tfds.download.DownloadManager) -> str:
    return os.fspath(dl_manager.manual_dir)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._source_root(dl_manager)
    index = registry.load_index(self.DATABASE, root, classes=self.builder_config.classes or None,
                                **({"annotation": self._annotation} if self._annotation else {}))
    index.print_report()
    if not index.clips:
      raise index_lib.DatasetError(f"{self.name}: no usable clip under {root!r}\n{index.report()}")
    return {"train": self._generate_examples(index)}

  def _example(self, record: index_lib.ClipRecord) -> dict[str, Any]:
    c = self.builder_config
    clip, apex = frames_lib.load_clip(record, num_frames=c.num_frames, image_size=c.image_size)
    return {"frames": clip, "label": record.label, "subject": record.subject,
            "clip_id": record.clip_id, "dataset": record.dataset, "apex_index": apex}

  def _generate_examples(self, index: index_lib.DatasetIndex) -> Iterator[tuple[str, dict]]:
    for i, record in enumerate(index.clips):   # (subject, clip) can repeat (CAS(ME)^3)
      yield f"{i:06d}/{record.dataset}/{record.subject}/{record.clip_id}", self._example(record)


def read_numpy(source: Any) -> dict[str, np.ndarray]:
  """All examples of a data source (e.g. `builder.as_data_source()['train']`) stacked into NumPy.

  Text features come back as `bytes`; they are decoded to `str` here. Keys are sorted so the
  order does not depend on TFDS's shuffling: sort by (dataset, subject, clip_id).
  """
  examples = [source[i] for i in range(len(source))]
  decode = lambda v: v.decode() if isinstance(v, bytes) else v
  examples = [{k: decode(v) for k, v in e.items()} for e in examples]
  examples.sort(key=lambda e: (e["dataset"], e["subject"], e["clip_id"]))
  if not examples:
    return {}
  return {k: np.asarray([e[k] for e in examples]) for k in examples[0]}
