"""synthaug-io: the I/O mechanics shared by synthaug packages, each defined once."""

from synthaug.io.atomic import atomic_dir, atomic_path, write_json, write_text
from synthaug.io.errors import WeightsFileError
from synthaug.io.safetensors_file import SafetensorsFile, read_safetensors
from synthaug.io.torch_pickle import ALLOWED_GLOBALS, load_torch_file, read_state_dict

__all__ = [
    "ALLOWED_GLOBALS",
    "SafetensorsFile",
    "WeightsFileError",
    "atomic_dir",
    "atomic_path",
    "load_torch_file",
    "read_safetensors",
    "read_state_dict",
    "write_json",
    "write_text",
]
