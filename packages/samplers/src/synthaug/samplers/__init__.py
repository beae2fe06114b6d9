"""synthaug.samplers: Compiled DDPM (log-variance mix) and DDIM samplers, classifier-free guidance, thresholding and the cascade."""

from importlib import metadata as _metadata

from synthaug.samplers.cascade import (
    CascadeStage,
    UNetModelFn,
    cascade_sample,
    paper_cascade_settings,
)
from synthaug.samplers.coefficients import (
    DDIMCoefficients,
    DDPMCoefficients,
    ddim_coefficients,
    ddim_step,
    ddpm_coefficients,
    ddpm_posterior,
)
from synthaug.samplers.guidance import (
    DEFAULT_PERCENTILE,
    PREDICTION_TYPES,
    THRESHOLDING_METHODS,
    abs_percentile,
    dynamic_threshold,
    eps_and_x0,
    guided_prediction,
    static_threshold,
    threshold,
    unconditional_cond,
)
from synthaug.samplers.respacing import kept_steps, respace, spaced_steps
from synthaug.samplers.sampling import Trajectory, ddim_sample, ddpm_sample

try:
    __version__ = _metadata.version("synthaug-samplers")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_PERCENTILE",
    "PREDICTION_TYPES",
    "THRESHOLDING_METHODS",
    "CascadeStage",
    "DDIMCoefficients",
    "DDPMCoefficients",
    "Trajectory",
    "UNetModelFn",
    "__version__",
    "abs_percentile",
    "cascade_sample",
    "ddim_coefficients",
    "ddim_sample",
    "ddim_step",
    "ddpm_coefficients",
    "ddpm_posterior",
    "ddpm_sample",
    "dynamic_threshold",
    "eps_and_x0",
    "guided_prediction",
    "kept_steps",
    "paper_cascade_settings",
    "respace",
    "spaced_steps",
    "static_threshold",
    "threshold",
    "unconditional_cond",
]
