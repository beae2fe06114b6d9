"""synthaug.text_encoder: The T5 v1.1 encoder in Flax, SentencePiece tokenisation, checkpoint import and a class-prompt embedding cache."""

from importlib import metadata as _metadata

from synthaug.text_encoder.cache import PromptEmbeddingCache, class_prompts, params_fingerprint
from synthaug.text_encoder.checkpoint import load_hf_checkpoint, load_t5x_checkpoint
from synthaug.text_encoder.config import PRESETS, get_config, make_config, validate_config
from synthaug.text_encoder.encode import encode_batched, make_encode_fn
from synthaug.text_encoder.errors import CheckpointError, StaleCacheError
from synthaug.text_encoder.model import (
    T5Encoder,
    count_params,
    init_params,
    param_shapes,
    relative_position_bucket,
)
from synthaug.text_encoder.tokenizer import Tokenizer, train_tokenizer

try:
    __version__ = _metadata.version("synthaug-text-encoder")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "PRESETS",
    "CheckpointError",
    "PromptEmbeddingCache",
    "StaleCacheError",
    "T5Encoder",
    "Tokenizer",
    "class_prompts",
    "count_params",
    "encode_batched",
    "get_config",
    "init_params",
    "load_hf_checkpoint",
    "load_t5x_checkpoint",
    "make_config",
    "make_encode_fn",
    "param_shapes",
    "params_fingerprint",
    "relative_position_bucket",
    "train_tokenizer",
    "validate_config",
]
