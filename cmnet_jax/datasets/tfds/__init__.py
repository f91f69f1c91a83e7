"""TFDS builders (array_record, no TensorFlow needed) for every database and the synthetic set.

Importing this package registers `cmnet_casme2`, `cmnet_samm`, `cmnet_smic`, `cmnet_casme3`,
`cmnet_megc2019` and `cmnet_synthetic` with TFDS. Prepare, then read back into NumPy:

    builder = tfds_builders.Casme2(num_frames=9, image_size=112, data_dir=data_dir,
                                   file_format='array_record')
    builder.download_and_prepare()                  # reads <data_dir>/downloads/manual/
    arrays = read_numpy(builder.as_data_source()['train'])
    # later, without the builder's settings:
    tfds.builder_from_directory(builder.data_dir).as_data_source()

>>> sorted(BUILDERS)
['casme2', 'casme3', 'megc2019', 'samm', 'smic', 'synthetic']
"""
from cmnet_jax.datasets.tfds.base import MerBuilder, MerConfig, mer_config, read_numpy
from cmnet_jax.datasets.tfds.builders import Casme2, Casme3, Megc2019, Samm, Smic, Synthetic

BUILDERS = {"casme2": Casme2, "samm": Samm, "smic": Smic, "casme3": Casme3,
            "megc2019": Megc2019, "synthetic": Synthetic}

__all__ = ["BUILDERS", "Casme2", "Casme3", "Megc2019", "MerBuilder", "MerConfig", "Samm", "Smic",
           "Synthetic", "mer_config", "read_numpy"]
