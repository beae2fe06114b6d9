"""synthaug.metrics: FID Inception-v3 features, exact Fréchet distance, Inception Score,
precision/recall and CAS.

Numbers comparable with published tables: the Inception network is pytorch-fid's port of the
2015-12-05 TF graph (weights from ``pt_inception-2015-12-05-6726825d.pth``), statistics are
streamed in float64, and the Fréchet distance is computed exactly with symmetric
eigendecompositions.
"""

from importlib import metadata as _metadata

from synthaug.metrics.distributed import (
    allgather_stats,
    make_sharded_feature_fn,
    merge_states,
    streaming_statistics,
)
from synthaug.metrics.frechet import (
    IndefiniteCovarianceError,
    frechet_distance,
    trace_sqrt_product,
)
from synthaug.metrics.inception import (
    FID_WEIGHTS_FILENAME,
    FIDInception,
    StateDictError,
    convert_fid_state_dict,
    fid_inception_torch_shapes,
    load_fid_inception,
    make_feature_fn,
    resize_bilinear,
)
from synthaug.metrics.random_weights import random_state_dict
from synthaug.metrics.reference import (
    ReferenceBatch,
    iter_reference_images,
    load_reference_npz,
    reference_statistics,
    save_reference_npz,
)
from synthaug.metrics.scores import (
    classification_accuracy_score,
    inception_score,
    precision_recall,
)
from synthaug.metrics.stats import RunningStats

try:
    __version__ = _metadata.version("synthaug-metrics")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "FIDInception",
    "FID_WEIGHTS_FILENAME",
    "IndefiniteCovarianceError",
    "ReferenceBatch",
    "RunningStats",
    "StateDictError",
    "allgather_stats",
    "classification_accuracy_score",
    "convert_fid_state_dict",
    "fid_inception_torch_shapes",
    "frechet_distance",
    "inception_score",
    "iter_reference_images",
    "load_fid_inception",
    "load_reference_npz",
    "make_feature_fn",
    "make_sharded_feature_fn",
    "merge_states",
    "precision_recall",
    "random_state_dict",
    "reference_statistics",
    "resize_bilinear",
    "save_reference_npz",
    "streaming_statistics",
    "trace_sqrt_product",
]
