"""TFDS builders (array_record, no TensorFlow needed) for every database and the synthetic set.

Importing this package registers one builder per declared database (`cmnet_casme2`,
`cmnet_samm`, `cmnet_smic`, `cmnet_casme3`, `cmnet_megc2019`; see `datasets.registry`) and
`cmnet_synthetic` with TFDS. Prepare, then read back into NumPy:

    builder = tfds_builders.Casme2(num_frames=9, image_size=112, data_dir=data_dir,
                                   file_format='array_record')
    builder.download_and_prepare()                  # reads <data_dir>/downloads/manual/
    arrays = read_numpy(builder.as_data_source()['train'])
    # later, without the builder's settings:
    tfds.builder_from_directory(builder.data_dir).as_data_source()

>>> BUILDERS['casme2'].name, BUILDERS['synthetic'].name
('cmnet_casme2', 'cmnet_synthetic')
"""
from cmnet_jax.datasets.tfds.base import MerBuilder, MerConfig, mer_config, read_numpy
from cmnet_jax.datasets.tfds import builders as _builders
from cmnet_jax.datasets.tfds.builders import *  # pylint: disable=wildcard-import  # Casme2, ...

BUILDERS = {**_builders.DATABASE_BUILDERS, "synthetic": _builders.Synthetic}


def prepare(config, workdir) -> str:
  """`run.py --mode=prepare`: builds the TFDS (array_record) version of `config.data`'s database.

  Writes under `<workdir>/tfds`; the unpacked database is `config.data.root` (the synthetic set is
  generated there instead). Returns the prepared dataset's directory, which
  `tfds.builder_from_directory(path).as_data_source()` reads back without TensorFlow.
  """
  import os  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  d = config.data
  if d.name not in BUILDERS:
    raise ValueError(f"data.name: expected one of {sorted(BUILDERS)}, got {d.name!r}")
  kwargs = dict(num_frames=int(d.num_frames), image_size=int(d.image_size),
                classes=d.classes or None, data_dir=os.path.join(os.fspath(workdir), "tfds"),
                file_format="array_record")
  if d.name == "synthetic":
    builder = _builders.Synthetic(synthetic_config=config.synthetic, **kwargs)
    builder.download_and_prepare()
  else:
    if not d.root:
      raise ValueError(f"data.root is empty: set --config.data.root to the unpacked {d.name} "
                       "folder")
    builder = BUILDERS[d.name](annotation=d.annotation or None, **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(d.root)))
  return os.fspath(builder.data_dir)


__all__ = ["BUILDERS", "MerBuilder", "MerConfig", "mer_config", "prepare",
           "read_numpy"] + _builders.__all__
