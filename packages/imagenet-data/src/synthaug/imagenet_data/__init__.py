"""synthaug.imagenet_data: ImageNet readers on tf.data, the paper's preprocessing, synthetic
shards, real+synthetic mixing and the demo data."""

import importlib
from importlib import metadata as _metadata

from synthaug.imagenet_data.classes import (
    NUM_CLASSES,
    PROMPT_OVERRIDES,
    UnknownClassError,
    class_name,
    class_names,
    label_from_name,
    label_to_wnid,
    num_classes,
    prompt_name,
    prompt_names,
    short_name,
    short_names,
    wnid_to_label,
    wnids,
)
from synthaug.imagenet_data.digits import (
    DIGITS_CLASS_NAMES,
    digits,
    digits_arrays,
    digits_class_name,
)
from synthaug.imagenet_data.report import DataReport

# Modules load on first use: importing TensorFlow takes many seconds, and the class tables,
# the digits arrays, the data report and the synthetic shard writer (``records``: TFRecord
# files without TensorFlow) need only NumPy; the tf.data readers load it.
_LAZY = {
    "DEFAULT_SHUFFLE_BUFFER": "synthetic",
    "MixReport": "mixing",
    "SyntheticShardWriter": "synthetic",
    "decode_rgb": "decode",
    "diffusion_downsample": "preprocess",
    "eval_resize_crop": "preprocess",
    "from_float_range": "preprocess",
    "host_dir": "synthetic",
    "host_range": "synthetic",
    "from_folders": "sources",
    "from_tfds": "sources",
    "from_tfrecords": "sources",
    "inception_crop_flip": "preprocess",
    "iter_synthetic": "synthetic",
    "list_folder_split": "sources",
    "looks_complete": "decode",
    "measure_composition": "mixing",
    "mix": "mixing",
    "read_devkit_meta": "sources",
    "read_manifest": "synthetic",
    "read_synthetic": "synthetic",
    "verify_shards": "synthetic",
    "read_val_labels": "sources",
    "synthetic_dirs": "synthetic",
    "to_float_range": "preprocess",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f"{__name__}.{module}")
    for other, where in _LAZY.items():
        if where == module:
            globals()[other] = getattr(mod, other)
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


try:
    __version__ = _metadata.version("synthaug-imagenet-data")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_SHUFFLE_BUFFER",
    "DIGITS_CLASS_NAMES",
    "NUM_CLASSES",
    "PROMPT_OVERRIDES",
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
    "host_dir",
    "host_range",
    "inception_crop_flip",
    "iter_synthetic",
    "label_from_name",
    "label_to_wnid",
    "list_folder_split",
    "looks_complete",
    "measure_composition",
    "mix",
    "num_classes",
    "prompt_name",
    "prompt_names",
    "read_devkit_meta",
    "read_manifest",
    "read_synthetic",
    "verify_shards",
    "read_val_labels",
    "short_name",
    "short_names",
    "synthetic_dirs",
    "to_float_range",
    "wnid_to_label",
    "wnids",
]
