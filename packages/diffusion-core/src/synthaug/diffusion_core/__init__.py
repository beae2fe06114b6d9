"""synthaug.diffusion_core: Imagen U-Nets, continuous-time noise schedules, the diffusion loss and resumable training state."""

from importlib import metadata as _metadata

from synthaug.diffusion_core.adm import ADMUNet
from synthaug.diffusion_core.checkpoint import load_params
from synthaug.diffusion_core.configs import (
    PRESETS,
    abstract_params,
    get_preset,
    is_super_resolution,
    make_model,
    param_count,
)
from synthaug.diffusion_core.diffusion import (
    PREDICTION_TYPES,
    augment_lowres,
    check_prediction_type,
    diffusion_loss,
    drop_text,
    eps_and_x0,
    predict_x0_eps,
    prediction_target,
    q_sample,
    upsample_lowres,
)
from synthaug.diffusion_core.efficient_unet import EfficientUNet
from synthaug.diffusion_core.finetune import MergeReport, init_from_pretrained, merge_params
from synthaug.diffusion_core.lowres import (
    AUG_ORDERS,
    RESIZE_METHODS,
    aug_step,
    condition_lowres,
    if_augment_lowres,
    lowres_settings,
    quantize_aug_level,
    resize_align_corners,
)
from synthaug.diffusion_core.schedules import (
    LOG_SNR_MAX,
    LOG_SNR_MIN,
    DiscreteSchedule,
    alpha_sigma,
    alpha_squared,
    cosine_log_snr,
    discrete_schedule,
    discretize,
    get_log_snr_fn,
    linear_beta_log_snr,
    linear_beta_schedule,
    log_snr_from_alpha_squared,
    nichol_cosine_log_snr,
    nichol_cosine_schedule,
    sigma_squared,
)
from synthaug.diffusion_core.sharding import (
    DATA_AXES,
    batch_sharding,
    param_specs,
    state_shardings,
)
from synthaug.diffusion_core.train import (
    NonFiniteLossError,
    TrainState,
    accumulated_value_and_grad,
    create_train_state,
    ema_update,
    freeze_labels,
    learning_rate_schedule,
    make_optimizer,
    make_train_step,
    param_path,
    state_from_params,
    train,
)
from synthaug.diffusion_core.unet import UNet

try:
    __version__ = _metadata.version("synthaug-diffusion-core")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ADMUNet",
    "DATA_AXES",
    "LOG_SNR_MAX",
    "LOG_SNR_MIN",
    "PREDICTION_TYPES",
    "PRESETS",
    "DiscreteSchedule",
    "EfficientUNet",
    "MergeReport",
    "NonFiniteLossError",
    "TrainState",
    "UNet",
    "abstract_params",
    "accumulated_value_and_grad",
    "alpha_sigma",
    "alpha_squared",
    "augment_lowres",
    "batch_sharding",
    "check_prediction_type",
    "cosine_log_snr",
    "create_train_state",
    "diffusion_loss",
    "discrete_schedule",
    "discretize",
    "drop_text",
    "ema_update",
    "eps_and_x0",
    "freeze_labels",
    "get_log_snr_fn",
    "get_preset",
    "if_augment_lowres",
    "lowres_settings",
    "quantize_aug_level",
    "condition_lowres",
    "aug_step",
    "AUG_ORDERS",
    "RESIZE_METHODS",
    "init_from_pretrained",
    "is_super_resolution",
    "learning_rate_schedule",
    "linear_beta_log_snr",
    "linear_beta_schedule",
    "load_params",
    "log_snr_from_alpha_squared",
    "make_model",
    "make_optimizer",
    "make_train_step",
    "merge_params",
    "nichol_cosine_log_snr",
    "nichol_cosine_schedule",
    "param_count",
    "param_path",
    "param_specs",
    "predict_x0_eps",
    "prediction_target",
    "q_sample",
    "resize_align_corners",
    "sigma_squared",
    "state_from_params",
    "state_shardings",
    "train",
    "upsample_lowres",
]
