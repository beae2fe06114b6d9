"""synthaug-io: the I/O mechanics shared by synthaug packages, each defined once."""

from synthaug.io.atomic import atomic_dir, atomic_path, write_json, write_text

__all__ = ["atomic_dir", "atomic_path", "write_json", "write_text"]
