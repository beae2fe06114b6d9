"""Meshes and FSDP sharding rules of the paper's diffusion fine-tuning configs.

`UNET_FSDP_RULES` split every large kernel of the Imagen U-Nets (diffusion-core's ``unet``
and ``efficient_unet``) over the ``fsdp`` mesh axis: convolutions and dense layers along
their output features, attention projections along their input features. Biases, norms and
the 3-channel input/output convolutions stay replicated. With ``fsdp=8`` parameters, EMA,
gradients and optimizer state take an eighth of the memory per device; ``synthaug plan``
shows the sizes.
"""

UNET_FSDP_RULES = (
    (r"(^|/)(conv_\d+|skip)/kernel$", (None, None, None, "fsdp")),
    (r"(^|/)(dense_\d+|emb_proj|proj)/kernel$", (None, "fsdp")),
    (r"(^|/)(qkv|text_kv|pool_kv)/kernel$", ("fsdp", None, None, None)),
    (r"(^|/)(proj_out|pool_out)/kernel$", (None, None, "fsdp")),
    (r"(^|/)pool_q/kernel$", ("fsdp", None, None)),
)

#: 256 chips as 32 data-parallel groups of 8 FSDP shards.
UNET_FSDP_MESH = {"data": -1, "fsdp": 8, "model": 1}
