"""TFDS builders for the licensed micro-expression databases (manual download) and synthetic set.

Each database must be requested from its owners and unpacked by the user into the manual folder
(`<data_dir>/downloads/manual/` unless `download_config.manual_dir` says otherwise), laid out as
the owners ship it (docs/DATASETS.md). The synthetic builder needs no download: it generates the
CASME II-format tree itself (idempotently) and adds the true per-frame intensity.

    >>> from cmnet_jax.datasets.tfds import builders
    >>> builders.Casme2.name, builders.Synthetic.name
    ('cmnet_casme2', 'cmnet_synthetic')
"""
import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import megc2019 as megc2019_reader
from cmnet_jax.datasets import synthetic
from cmnet_jax.datasets.tfds.base import MerBuilder, mer_config

_COMMON = """
Unpack it into the manual folder (`<data_dir>/downloads/manual/`, or pass
`download_config=tfds.download.DownloadConfig(manual_dir=...)`) so that it holds:
"""


class Casme2(MerBuilder):
  """CASME II (200 fps): 5 classes (default) or the MEGC2019 3-class mapping ('3class')."""
  name = "cmnet_casme2"
  DATABASE, DEFAULT_CLASSES = "casme2", "5class"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request CASME II from its owners, the Institute of Psychology, Chinese Academy of "
      "Sciences (Fu Xiaolan's group, http://casme.psych.ac.cn/casme/e2), by signing their licence "
      "agreement." + _COMMON + """
  Cropped/sub01/EP02_01f/reg_img46.jpg ...   (or Cropped-updated/Cropped/, CASME2_RAW_selected/)
  CASME2-coding-20190701.xlsx                (or CASME2-coding-20140508.xlsx)
""")


class Samm(MerBuilder):
  """SAMM (200 fps, greyscale): 5 classes (default) or '3class'."""
  name = "cmnet_samm"
  DATABASE, DEFAULT_CLASSES = "samm", "5class"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request SAMM from Manchester Metropolitan University (Moi Hoon Yap's group, "
      "http://www2.docm.mmu.ac.uk/STAFF/M.Yap/dataset.php) by signing their licence agreement."
      + _COMMON + """
  SAMM/006/006_1_2/006_05562.jpg ...
  SAMM_Micro_FACS_Codes_v2.xlsx              (sheet MICRO_ONLY)
""")


class Smic(MerBuilder):
  """SMIC-HS (100 fps): negative / positive / surprise, labels from the folder names."""
  name = "cmnet_smic"
  DATABASE, DEFAULT_CLASSES = "smic", "3class"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request SMIC from the University of Oulu, Center for Machine Vision and Signal Analysis "
      "(Guoying Zhao's group, https://www.oulu.fi/cmvs/) by signing their licence agreement."
      + _COMMON + """
  SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image559740.bmp ...
  (or SMIC_all_raw/HS/...; no annotation file is needed)
""")


class Casme3(MerBuilder):
  """CAS(ME)^3 Part A (30 fps): '7class' (default), '4class' or '3class'."""
  name = "cmnet_casme3"
  DATABASE, DEFAULT_CLASSES = "casme3", "7class"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request CAS(ME)^3 from the Institute of Psychology, Chinese Academy of Sciences "
      "(http://casme.psych.ac.cn/casme/e4) by signing their licence agreement." + _COMMON + """
  Part_A_ME_clip/frame/spNO.1_a_355/355.jpg ...   (or part_A/<...>/spNO.1/a/color/355.jpg)
  cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx       (sheet label)
""")


class Megc2019(MerBuilder):
  """The MEGC2019 composite (CASME II + SAMM + SMIC-HS, 3 classes, 68 subjects)."""
  name = "cmnet_megc2019"
  DATABASE, DEFAULT_CLASSES = "megc2019", "3class"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request CASME II, SAMM and SMIC from their owners (see the cmnet_casme2, cmnet_samm and "
      "cmnet_smic builders) and take combined_3class_gt.csv from the MEGC2019 challenge "
      "(https://facial-micro-expressiongc.github.io/MEGC2019/)." + _COMMON + """
  CASME2/   (a CASME II folder as for cmnet_casme2)
  SAMM/     (a SAMM folder as for cmnet_samm: SAMM/SAMM/006/... and the coding xlsx)
  SMIC/     (a SMIC folder as for cmnet_smic)
  combined_3class_gt.csv
""")

  @classmethod
  def class_names(cls, classes: str = "") -> tuple[str, ...]:
    if classes not in ("", "3class"):
      raise ValueError(f"{cls.name}: the composite has only the '3class' scheme, got {classes!r}")
    return tuple(megc2019_reader.CLASS_NAMES)


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
  DATABASE, DEFAULT_CLASSES = "casme2", "5class"
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
