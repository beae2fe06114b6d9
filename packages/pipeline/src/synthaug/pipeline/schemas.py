"""The default config of every stage: the schema a config is validated against.

A config file's ``get_config()`` returns a ``ConfigDict`` with a ``stage`` key. It is merged
into a copy of that stage's schema: a key the schema lacks is an error, and so is a value
whose type differs from the schema's (an int is accepted where a float is expected, a list
where a tuple is). Keys the config leaves out keep the schema's default.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

__all__ = ["SCHEMAS", "STAGES", "get_schema"]


def _text() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # synthaug.text_encoder preset ("xxl" for Imagen, "tiny" for toy runs).
            "encoder": "xxl",
            # Encoder weights (HF safetensors file or directory, t5x/orbax checkpoint);
            # "" initialises the encoder at random from `seed` (toy runs only).
            "checkpoint": "",
            # SentencePiece model; "" trains one on the class prompts (toy runs only).
            "tokenizer": "",
            "max_length": 128,
            "seed": 0,
            # Prompt embedding cache (.npz); "" keeps the embeddings in memory.
            "cache": "",
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


def finetune_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug finetune``: train one diffusion stage (base or SR)."""
    c = ml_collections.ConfigDict()
    c.stage = "finetune"
    c.seed = 0
    c.workdir = ""
    c.model = ml_collections.ConfigDict(
        {
            # synthaug.diffusion_core preset ("imagen_base_64", "imagen_sr_256", "tiny_base", ...).
            "preset": "imagen_base_64",
            # Checkpoint to start from; "" trains from scratch.
            "init_checkpoint": "",
        }
    )
    c.data = _data()
    c.text = _text()
    c.train = ml_collections.ConfigDict(
        {
            "steps": 210_000,
            "batch_size": 2048,
            "optimizer": "adafactor",
            "learning_rate": 1e-4,
            "warmup_steps": 10_000,
            "decay": "cosine",
            "ema_decay": 0.9999,
            "text_drop_prob": 0.1,
            "checkpoint_every": 5000,
            "log_every": 100,
        }
    )
    c.hardware = ""
    c.paper = ml_collections.ConfigDict({"fid": -1.0, "note": ""})
    return c


def _cascade_stage(preset: str, enabled: bool = True) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "enabled": enabled,
            "preset": preset,
            "checkpoint": "",
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
    # Class names ("" = the data set's own label set, see `dataset`); a name not in it is an error.
    c.dataset = "imagenet"  # "imagenet" or "digits"
    c.classes = ()
    c.per_class = 1200
    c.shard_size = 1000
    c.batch_size = 64
    c.text = _text()
    c.base = _cascade_stage("imagen_base_64")
    c.sr1 = _cascade_stage("imagen_sr_256")
    c.sr2 = _cascade_stage("imagen_sr_1024", enabled=False)
    c.hardware = ""
    c.paper = ml_collections.ConfigDict({"fid": -1.0, "inception_score": -1.0, "note": ""})
    return c


def classifier_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug train-classifier``: real, synthetic-only (CAS) or mixed training."""
    c = ml_collections.ConfigDict()
    c.stage = "train-classifier"
    c.seed = 0
    c.workdir = ""
    c.model = ml_collections.ConfigDict(
        {"name": "resnet50", "num_classes": 1000, "image_size": 224}
    )
    c.data = ml_collections.ConfigDict(
        {
            "mode": "real",  # "real", "synthetic" or "mixed"
            "real": _data(),
            "synthetic_dir": "",
            # Synthetic images used (0 = all written); mixed: total = real + synthetic.
            "synthetic_images": 0,
            "eval_split": "validation",
            # Stream through tf.data (always for ImageNet sources; digits stay in memory).
            "stream": False,
        }
    )
    c.train = ml_collections.ConfigDict(
        {
            "recipe": "resnet",  # "resnet" (Goyal et al.), "deit", "vit" (big_vision) or "demo"
            "optimizer": "sgd",  # "sgd" or "adamw"
            "epochs": 90,
            "batch_size": 1024,
            "base_learning_rate": 0.1,  # per 256 images
            "warmup_epochs": 5.0,  # may be fractional
            "schedule": "cosine",
            "weight_decay": 1e-4,
            "momentum": 0.9,
            "nesterov": True,
            "label_smoothing": 0.0,
            "mixup_alpha": 0.0,
            "cutmix_alpha": 0.0,
            "randaugment": "",  # e.g. "2,9": layers, magnitude; "" = off
            "checkpoint_every_epochs": 1,
        }
    )
    c.hardware = ""
    c.paper = ml_collections.ConfigDict({"top1": -1.0, "top5": -1.0, "note": ""})
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
    c.hardware = ""
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


def demo_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug demo``: the whole pipeline on the embedded digits, on a CPU."""
    c = ml_collections.ConfigDict()
    c.stage = "demo"
    c.seed = 0
    c.out = "demo_out"
    # Compile with XLA's backend optimisation level 0: compilation (which dominates a short
    # run) is about twice as fast, the compiled steps somewhat slower.
    c.fast_compile = False
    c.text = _text()
    c.text.encoder = "tiny"
    c.text.max_length = 8
    c.real_per_class = 10  # the small real subset classifier (a) is trained on
    c.base = ml_collections.ConfigDict(
        {"preset": "demo_base", "steps": 1000, "batch_size": 16, "learning_rate": 4e-3}
    )
    c.sr = ml_collections.ConfigDict(
        {"preset": "demo_sr", "steps": 800, "batch_size": 8, "learning_rate": 2e-3}
    )
    c.sample = ml_collections.ConfigDict(
        {
            "per_class": 20,
            "shard_size": 50,
            "batch_size": 50,
            "base_steps": 25,
            "sr_steps": 10,
            "base_guidance": 1.25,
            "base_log_var_mix": 0.0,
            "sr_guidance": 1.0,
            "sr_log_var_mix": 0.1,
            "sr_aug_level": 0.0,
            "sweep_guidance": (1.0, 1.25, 3.0),
            "sweep_per_class": 20,
        }
    )
    # Every classifier takes `steps` optimizer steps of `batch_size` (the training set is
    # passed over as many times as that needs); `learning_rate` is per 256 images (SGD).
    c.classifier = ml_collections.ConfigDict(
        {"name": "resnet_tiny", "steps": 150, "batch_size": 32, "learning_rate": 0.8}
    )
    return c


def _fid_stats_schema() -> ml_collections.ConfigDict:
    from synthaug.pipeline.fid_stats import fid_stats_schema

    return fid_stats_schema()


SCHEMAS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "finetune": finetune_schema,
    "sample": sample_schema,
    "train-classifier": classifier_schema,
    "evaluate": evaluate_schema,
    "report": report_schema,
    "demo": demo_schema,
    "fid-stats": _fid_stats_schema,
}
STAGES = tuple(SCHEMAS)


def get_schema(stage: str) -> ml_collections.ConfigDict:
    """A fresh copy of the default config of ``stage`` (one of :data:`STAGES`)."""
    if stage not in SCHEMAS:
        from synthaug.pipeline.errors import ConfigError

        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return SCHEMAS[stage]()
