"""synthaug.imagenet_data: ImageNet readers on tf.data, the paper's preprocessing, synthetic
shards, real+synthetic mixing and the demo data."""

from importlib import metadata as _metadata

from synthaug.imagenet_data.classes import (
    NUM_CLASSES,
    UnknownClassError,
    class_name,
    class_names,
    label_from_name,
    label_to_wnid,
    num_classes,
    short_name,
    short_names,
    wnid_to_label,
    wnids,
)
from synthaug.imagenet_data.decode import decode_rgb, looks_complete
from synthaug.imagenet_data.digits import (
    DIGITS_CLASS_NAMES,
    digits,
    digits_arrays,
    digits_class_name,
)
from synthaug.imagenet_data.mixing import MixReport, measure_composition, mix
from synthaug.imagenet_data.preprocess import (
    diffusion_downsample,
    eval_resize_crop,
    from_float_range,
    inception_crop_flip,
    to_float_range,
)
from synthaug.imagenet_data.report import DataReport
from synthaug.imagenet_data.sources import (
    from_folders,
    from_tfds,
    from_tfrecords,
    list_folder_split,
    read_devkit_meta,
    read_val_labels,
)
from synthaug.imagenet_data.synthetic import SyntheticShardWriter, read_manifest, read_synthetic

try:
    __version__ = _metadata.version("synthaug-imagenet-data")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DIGITS_CLASS_NAMES",
    "NUM_CLASSES",
    "DataReport",
    "MixReport",
    "SyntheticShardWriter",
    "UnknownClassError",
    "class_name",
    "class_names",
    "decode_rgb",
    "diffusion_downsample",
    "digits",
    "digits_arrays",
    "digits_class_name",
    "eval_resize_crop",
    "from_float_range",
    "from_folders",
    "from_tfds",
    "from_tfrecords",
    "inception_crop_flip",
    "label_from_name",
    "label_to_wnid",
    "list_folder_split",
    "looks_complete",
    "measure_composition",
    "mix",
    "num_classes",
    "read_devkit_meta",
    "read_manifest",
    "read_synthetic",
    "read_val_labels",
    "short_name",
    "short_names",
    "to_float_range",
    "wnid_to_label",
    "wnids",
]
