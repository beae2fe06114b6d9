"""The default config of every stage: the schema a config is validated against.

A stage config is the pipeline's own keys (where the data is, the workdir, the text encoder,
the device mesh, ...) plus the config of the package that does the work, under that
package's own key names and with that package's defaults:

* ``finetune``: the sections of a ``synthaug.diffusion_core`` preset (``model``,
  ``diffusion``, ``optimizer``, ``train``, as ``diffusion_core.get_preset(preset)`` returns
  them); ``preset`` names the preset they were built from.
* ``train-classifier``: a ``synthaug.classifiers`` recipe under ``recipe``
  (``classifiers.resnet_recipe()`` and its siblings; ``recipe.model_kwargs`` takes any
  keyword argument of the model).
* ``sample``, ``evaluate``, ``finetune``, ``train-classifier``: ``mesh`` (axis sizes of the
  device mesh, -1 = the rest of the devices; ``synthaug.tpu_launch.DEFAULT_AXES``) and
  ``sharding.rules`` (``(regex, partition spec)`` pairs; empty = replicated).

A config file builds its config from :func:`finetune_config`, :func:`classifier_config`
or :func:`get_schema` and changes values; the result is merged into the schema of its stage
(:func:`schema_for`): a key the schema lacks is an error, and so is a value whose type
differs from the schema's (an int is accepted where a float is expected, a list where a
tuple is). Keys the config leaves out keep the package's default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

__all__ = [
    "OPEN_KEYS",
    "SCHEMAS",
    "STAGES",
    "classifier_config",
    "finetune_config",
    "get_schema",
    "schema_for",
]

#: Groups whose keys are free (passed through to a constructor as keyword arguments).
OPEN_KEYS = frozenset({"recipe.model_kwargs"})

DEFAULT_PRESET = "imagen_base_64"


def _text() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # synthaug.text_encoder preset ("xxl" for Imagen, "tiny" for toy runs).
            "encoder": "xxl",
            # Encoder weights (HF safetensors file or directory, t5x/orbax checkpoint);
            # "" initialises the encoder at random from `seed` (toy runs only).
            "checkpoint": "",
            # SentencePiece model; "" trains one on the class prompts (toy runs only) and
            # keeps it in the stage's workdir.
            "tokenizer": "",
            "max_length": 128,
            "seed": 0,
            # Prompt embedding cache (.npz); "" keeps the embeddings in memory.
            "cache": "",
            # The prompt of each class: a str.format template with one {} for the class's
            # prompt name (synthaug.imagenet_data.prompt_names); "{}" is the name alone, as
            # in the paper; e.g. "a photo of a {}".
            "prompt_template": "{}",
        }
    )


def _data() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # "imagenet_tfds", "imagenet_folder", "imagenet_tfrecord" or "digits".
            "source": "imagenet_tfds",
            "data_dir": "",
            "split": "train",
            # Images per class taken from the real data (0 = all of it).
            "per_class": 0,
        }
    )


def _mesh() -> ml_collections.ConfigDict:
    """Axis sizes of the device mesh (tpu-launch's axes); -1 = the rest of the devices."""
    from synthaug.tpu_launch.mesh import DEFAULT_AXES

    return ml_collections.ConfigDict(dict(DEFAULT_AXES))


def _sharding() -> ml_collections.ConfigDict:
    # Ordered (regex over '/'-joined parameter paths, partition spec) pairs: the first
    # match wins; a parameter no rule matches is replicated. A spec is a tuple with one
    # entry per array dimension: a mesh axis name, a tuple of names, or None.
    return ml_collections.ConfigDict({"rules": ()})


def _common(c: ml_collections.ConfigDict) -> None:
    c.mesh = _mesh()
    c.sharding = _sharding()
    c.hardware = ""


def finetune_config(preset: str = DEFAULT_PRESET) -> ml_collections.ConfigDict:
    """The default ``synthaug finetune`` config of a diffusion-core preset.

    Args:
      preset: a ``synthaug.diffusion_core`` preset name (``"imagen_base_64"``,
        ``"imagen_sr_256"``, ``"tiny_base"``, ...).

    Returns:
      A ConfigDict: the pipeline's keys plus the preset's ``model``, ``diffusion``,
      ``optimizer`` and ``train`` sections (locked: a misspelt key is an error).

    Raises:
      ConfigError: an unknown preset.
    """
    from synthaug import diffusion_core as dc
    from synthaug.pipeline.errors import ConfigError

    try:
        package = dc.get_preset(preset)
    except KeyError:
        raise ConfigError(
            f"unknown diffusion preset {preset!r}; expected one of {', '.join(sorted(dc.PRESETS))}"
        ) from None
    c = ml_collections.ConfigDict()
    c.stage = "finetune"
    c.preset = preset
    # A diffusion checkpoint to start from (fine-tuning); "" trains from scratch.
    c.init_checkpoint = ""
    c.workdir = ""
    # Reuse a workdir whose run had another config (see the README: a run directory
    # belongs to one run).
    c.overwrite = False
    c.data = _data()
    c.text = _text()
    for section, value in package.items():
        c[section] = value
    _common(c)
    c.paper = ml_collections.ConfigDict({"fid": -1.0, "note": ""})
    return c


def classifier_config(recipe: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """The default ``synthaug train-classifier`` config around a classifier recipe.

    Args:
      recipe: a ``synthaug.classifiers`` recipe (``resnet_recipe(...)``,
        ``deit_recipe(...)``, ``demo_recipe(...)``); default ``resnet_recipe()``.

    Returns:
      A ConfigDict: the pipeline's keys plus the recipe under ``recipe``.
    """
    from synthaug import classifiers as cl

    c = ml_collections.ConfigDict()
    c.stage = "train-classifier"
    c.workdir = ""
    c.overwrite = False
    c.data = ml_collections.ConfigDict(
        {
            "mode": "real",  # "real", "synthetic" or "mixed"
            "real": _data(),
            "synthetic_dir": "",
            # Synthetic images used (0 = all written); mixed: total = real + synthetic.
            "synthetic_images": 0,
            # Streamed synthetic examples held by the shuffle buffer (encoded records, about
            # 100-150 KB each at 256x256 PNG), reshuffled every epoch; 0 shuffles the shard
            # order only (synthaug.imagenet_data.read_synthetic's shuffle_buffer).
            "shuffle_buffer": 10_000,
            "eval_split": "validation",
            # Stream through tf.data (always for ImageNet sources; digits stay in memory).
            "stream": False,
        }
    )
    c.recipe = cl.resnet_recipe() if recipe is None else recipe
    _common(c)
    c.paper = ml_collections.ConfigDict({"top1": -1.0, "top5": -1.0, "note": ""})
    return c


def _cascade_stage(preset: str, enabled: bool = True) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "enabled": enabled,
            # The architecture of a checkpoint without a model.json (a finetune workdir
            # records its model; the two must agree).
            "preset": preset,
            "checkpoint": "",
            # Which kept step of the checkpoint directory (-1 = the latest); e.g. the
            # best_step that `synthaug select-checkpoint` wrote.
            "checkpoint_step": -1,
            "sampler": "ddpm",  # "ddpm" (ancestral) or "ddim"
            "steps": 1000,
            "guidance": 1.0,  # Imagen convention: 1.0 is no guidance
            "log_var_mix": 0.0,
            "aug_level": 0.0,
            "threshold_percentile": 99.5,
        }
    )


def sample_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug sample``: a class-balanced synthetic data set from a cascade."""
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.seed = 0
    c.workdir = ""
    c.out_dir = ""
    c.overwrite = False
    # Class names ("" = the data set's own label set, see `dataset`); a name not in it is an error.
    c.dataset = "imagenet"  # "imagenet" or "digits"
    c.classes = ()
    c.per_class = 1200
    c.shard_size = 1000
    # Shard image encoding: "png" (lossless) or "jpeg" with jpeg_quality (1-100); sizes and
    # writer throughput of both in synthaug.imagenet_data's README.
    c.image_format = "png"
    c.jpeg_quality = 95
    c.batch_size = 64
    c.text = _text()
    c.base = _cascade_stage("imagen_base_64")
    c.sr1 = _cascade_stage("imagen_sr_256")
    c.sr2 = _cascade_stage("imagen_sr_1024", enabled=False)
    _common(c)
    c.paper = ml_collections.ConfigDict({"fid": -1.0, "inception_score": -1.0, "note": ""})
    return c


def evaluate_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug evaluate``: FID, IS and CAS of a synthetic set, or a classifier."""
    c = ml_collections.ConfigDict()
    c.stage = "evaluate"
    c.seed = 0
    c.workdir = ""
    c.samples_dir = ""
    c.metrics = ("fid", "inception_score")
    c.num_samples = 50_000
    c.batch_size = 250
    # Reference statistics (.npz with mu/sigma) for FID, and the Inception weights.
    c.reference = ""
    c.inception_checkpoint = ""
    # CAS / accuracy: a classifier workdir written by `train-classifier`.
    c.classifier_dir = ""
    c.real = _data()
    _common(c)
    c.paper = ml_collections.ConfigDict(
        {"fid": -1.0, "inception_score": -1.0, "top1": -1.0, "top5": -1.0, "note": ""}
    )
    return c


def report_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug report``: a Markdown report of the metrics of finished stages."""
    c = ml_collections.ConfigDict()
    c.stage = "report"
    c.title = "synthaug report"
    # Workdirs of finished stages; each holds a metrics.json.
    c.inputs = ()
    c.out = "report.md"
    return c


def demo_schema(
    base: str = "tiny_base",
    sr: str = "tiny_sr",
    recipe: ml_collections.ConfigDict | None = None,
) -> ml_collections.ConfigDict:
    """Schema of ``synthaug demo``: the whole pipeline on the embedded digits, on a CPU.

    The stages are whole stage configs (``base`` and ``sr``: finetune, ``sample``,
    ``classifier``: train-classifier); the demo sets their paths under ``out``, their seeds
    from ``seed`` and their ``text`` from its own.
    """
    from synthaug import classifiers as cl

    c = ml_collections.ConfigDict()
    c.stage = "demo"
    c.seed = 0
    c.out = "demo_out"
    c.overwrite = False
    # Compile with XLA's backend optimisation level 0: compilation (which dominates a short
    # run) is about twice as fast, the compiled steps somewhat slower.
    c.fast_compile = False
    c.text = _text()
    c.text.encoder = "tiny"
    c.text.max_length = 8
    c.real_per_class = 10  # the small real subset classifier (a) is trained on
    # Classifier seeds per row of the report (seed, seed + 1, ...): each seed draws its own
    # real subset, initialisation and data order, shared by the paired rows (a) and (c).
    c.seeds = 5
    # The data-size sweep: the real subset plus these multiples of its size in synthetic
    # images (the synthetic set holds real_per_class * max(size_sweep) images per class).
    c.size_sweep = (0.5, 1.0, 2.0, 4.0, 8.0)
    c.base = finetune_config(base)
    c.sr = finetune_config(sr)
    c.sample = sample_schema()
    c.classifier = classifier_config(recipe if recipe is not None else cl.demo_recipe())
    # The base guidance sweep: one synthetic set (and a CAS classifier) per weight.
    c.sweep = ml_collections.ConfigDict(
        {"guidance": (1.0, 1.25, 1.5, 2.0, 3.0), "per_class": 20, "seeds": 5}
    )
    return c


def _fid_stats_schema() -> ml_collections.ConfigDict:
    from synthaug.pipeline.fid_stats import fid_stats_schema

    return fid_stats_schema()


def _select_checkpoint_schema() -> ml_collections.ConfigDict:
    from synthaug.pipeline.select_checkpoint import select_checkpoint_schema

    return select_checkpoint_schema()


SCHEMAS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "finetune": finetune_config,
    "sample": sample_schema,
    "train-classifier": classifier_config,
    "evaluate": evaluate_schema,
    "report": report_schema,
    "demo": demo_schema,
    "fid-stats": _fid_stats_schema,
    "select-checkpoint": _select_checkpoint_schema,
}
STAGES = tuple(SCHEMAS)


def get_schema(stage: str) -> ml_collections.ConfigDict:
    """A fresh copy of the default config of ``stage`` (one of :data:`STAGES`)."""
    if stage not in SCHEMAS:
        from synthaug.pipeline.errors import ConfigError

        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return SCHEMAS[stage]()


def _get(config: Mapping[str, Any] | ml_collections.ConfigDict, key: str, default: Any) -> Any:
    try:
        value = config[key]
    except (KeyError, AttributeError, TypeError):
        return default
    return value


def schema_for(stage: str, config: Mapping[str, Any] | ml_collections.ConfigDict):
    """The schema ``config`` (a config of ``stage``) is validated against.

    For ``finetune`` it is built from the preset the config names (``preset``), for
    ``demo`` from the presets of its two finetune stages; the other stages have one schema.
    """
    if stage == "finetune":
        return finetune_config(str(_get(config, "preset", DEFAULT_PRESET)))
    if stage == "demo":
        base = _get(_get(config, "base", {}), "preset", "tiny_base")
        sr = _get(_get(config, "sr", {}), "preset", "tiny_sr")
        return demo_schema(str(base), str(sr))
    return get_schema(stage)
