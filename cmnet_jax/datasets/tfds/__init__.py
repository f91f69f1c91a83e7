"""TFDS builders (array_record, no TensorFlow needed) for every database and the synthetic set.

Importing this package registers one builder per declared licensed database (`cmnet_casme2`,
`cmnet_samm`, `cmnet_smic`, `cmnet_casme3`, `cmnet_megc2019`; see `datasets.registry`) and
`cmnet_synthetic` with TFDS. They are a library API for other input pipelines (training reads
the databases with the readers directly, `cmnet_jax.input_pipeline`). Prepare, then read back
into NumPy:

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


__all__ = ["BUILDERS", "MerBuilder", "MerConfig", "mer_config",
           "read_numpy"] + _builders.__all__
