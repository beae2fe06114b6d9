"""The paper's final per-stage sampling settings, shared by the sampling configs (not a config)."""

FINAL_BASE = dict(
    enabled=True,
    preset="imagen_base_64",
    checkpoint="",
    sampler="ddpm",
    steps=1000,
    guidance=1.25,
    log_var_mix=0.0,
    aug_level=0.0,
    threshold_percentile=99.5,
)
FINAL_SR256 = dict(FINAL_BASE, preset="imagen_sr_256", guidance=1.0, log_var_mix=0.1)
# The 1024 stage's sampler, steps and log-variance mix are not given in the paper (unverified).
FINAL_SR1024 = dict(FINAL_BASE, preset="imagen_sr_1024", sampler="ddim", steps=32, guidance=1.0)
TEXT = dict(encoder="xxl", checkpoint="", tokenizer="", max_length=128, cache="")
