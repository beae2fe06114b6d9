"""synthaug.pipeline: the thin orchestration: stages, experiment configs and the `synthaug` CLI.

Importing this package is cheap: the stages import JAX, TensorFlow and the leaf packages
when they run.
"""

from importlib import metadata as _metadata

from synthaug.pipeline.config import (
    CONFIGS_DIR,
    apply_overrides,
    list_configs,
    load_config,
    load_config_file,
    validate,
)
from synthaug.pipeline.errors import ConfigError, MissingPathError, PipelineError, UnknownClassError
from synthaug.pipeline.io import atomic_dir, atomic_path, write_json, write_text
from synthaug.pipeline.report import MarkdownReport, markdown_table
from synthaug.pipeline.schemas import STAGES, get_schema
from synthaug.pipeline.writer import MetricWriter, StageTimer, read_metrics

try:
    __version__ = _metadata.version("synthaug-pipeline")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


def finetune(cfg, **kw):
    """Run the ``finetune`` stage (see :func:`synthaug.pipeline.finetune.finetune`)."""
    from synthaug.pipeline.finetune import finetune as _f

    return _f(cfg, **kw)


def sample(cfg, **kw):
    """Run the ``sample`` stage (see :func:`synthaug.pipeline.sample.sample`)."""
    from synthaug.pipeline.sample import sample as _f

    return _f(cfg, **kw)


def train_classifier(cfg, **kw):
    """Run the ``train-classifier`` stage (see :mod:`synthaug.pipeline.classify`)."""
    from synthaug.pipeline.classify import train_classifier as _f

    return _f(cfg, **kw)


def evaluate(cfg, **kw):
    """Run the ``evaluate`` stage (see :func:`synthaug.pipeline.evaluate.evaluate`)."""
    from synthaug.pipeline.evaluate import evaluate as _f

    return _f(cfg, **kw)


def report(cfg):
    """Run the ``report`` stage (see :func:`synthaug.pipeline.stages.report`)."""
    from synthaug.pipeline.stages import report as _f

    return _f(cfg)


def run_demo(cfg, **kw):
    """Run the demo (see :func:`synthaug.pipeline.demo.run_demo`)."""
    from synthaug.pipeline.demo import run_demo as _f

    return _f(cfg, **kw)


def run_stage(stage, cfg):
    """Run any stage by its subcommand name on a validated config."""
    from synthaug.pipeline.stages import run_stage as _f

    return _f(stage, cfg)


__all__ = [
    "CONFIGS_DIR",
    "STAGES",
    "ConfigError",
    "MarkdownReport",
    "MetricWriter",
    "MissingPathError",
    "PipelineError",
    "StageTimer",
    "UnknownClassError",
    "__version__",
    "apply_overrides",
    "atomic_dir",
    "atomic_path",
    "evaluate",
    "finetune",
    "get_schema",
    "list_configs",
    "load_config",
    "load_config_file",
    "markdown_table",
    "read_metrics",
    "report",
    "run_demo",
    "run_stage",
    "sample",
    "train_classifier",
    "validate",
    "write_json",
    "write_text",
]
