"""synthaug.classifiers: ResNet, ViT and DeiT in Flax, the paper's training recipes,
data-parallel training and exact evaluation."""

from importlib import metadata as _metadata

from synthaug.classifiers.augment import (
    RANDAUGMENT_OPS,
    mixup_cutmix,
    mixup_roll,
    rand_augment,
    random_erasing,
    random_flip,
    random_pad_crop,
)
from synthaug.classifiers.checkpoint import CONFIG_FILE, load_classifier, save_classifier
from synthaug.classifiers.conv import KERNEL_GRAD_MODES, conv_general_dilated
from synthaug.classifiers.evaluate import (
    eval_batch_size,
    evaluate,
    evaluate_batches,
    predict_features,
)
from synthaug.classifiers.fit import NonFiniteLossError, epoch_permutation, fit, fit_stream
from synthaug.classifiers.models import (
    MODEL_NAMES,
    count_params,
    default_image_size,
    get_model,
    init_shapes,
    model_kwargs,
)
from synthaug.classifiers.optim import (
    learning_rate_schedule,
    make_optimizer,
    num_steps,
    weight_decay_mask,
)
from synthaug.classifiers.parallel import local_batch_size, shard_batch
from synthaug.classifiers.preprocess import prepare_images
from synthaug.classifiers.recipes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    base_config,
    deit_recipe,
    demo_recipe,
    peak_learning_rate,
    resnet_recipe,
    validate_config,
    vit_recipe,
)
from synthaug.classifiers.resnet import ResNet
from synthaug.classifiers.state import TrainState, create_train_state, model_from_config
from synthaug.classifiers.steps import make_eval_step, make_feature_fn, make_train_step
from synthaug.classifiers.torch_import import (
    CheckpointFormatError,
    convert_state_dict,
    detect_layout,
    load_state_dict,
    load_torch_weights,
    read_pth,
    read_safetensors,
)
from synthaug.classifiers.vit import VisionTransformer

try:
    __version__ = _metadata.version("synthaug-classifiers")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KERNEL_GRAD_MODES",
    "MODEL_NAMES",
    "NonFiniteLossError",
    "RANDAUGMENT_OPS",
    "CheckpointFormatError",
    "CONFIG_FILE",
    "ResNet",
    "TrainState",
    "VisionTransformer",
    "conv_general_dilated",
    "convert_state_dict",
    "base_config",
    "count_params",
    "create_train_state",
    "default_image_size",
    "deit_recipe",
    "demo_recipe",
    "detect_layout",
    "epoch_permutation",
    "eval_batch_size",
    "evaluate",
    "evaluate_batches",
    "fit",
    "fit_stream",
    "get_model",
    "init_shapes",
    "learning_rate_schedule",
    "load_state_dict",
    "load_classifier",
    "load_torch_weights",
    "local_batch_size",
    "make_eval_step",
    "make_feature_fn",
    "make_optimizer",
    "make_train_step",
    "mixup_cutmix",
    "mixup_roll",
    "model_from_config",
    "model_kwargs",
    "num_steps",
    "peak_learning_rate",
    "predict_features",
    "prepare_images",
    "rand_augment",
    "random_erasing",
    "random_flip",
    "random_pad_crop",
    "read_pth",
    "read_safetensors",
    "resnet_recipe",
    "save_classifier",
    "shard_batch",
    "validate_config",
    "vit_recipe",
    "weight_decay_mask",
]
