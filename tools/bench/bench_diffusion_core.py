"""Benchmark of synthaug.diffusion_core: training steps/s and achieved FLOP/s on this machine.

For the tiny U-Net (``tiny_base``) and a mid-size one (a 32x32 ADM U-Net, 64 channels; full
runs only), one jitted training step (forward, backward, optimizer, EMA) is timed; its FLOPs
come from XLA's cost analysis of the compiled step. The peer is this machine's float32 matmul throughput,
measured in the same run with ``jnp.dot`` of two large square matrices, so the ratio is the
fraction of the machine's matmul FLOP/s that a training step achieves.

    python tools/bench/run.py --only diffusion_core [--quick]
"""

from __future__ import annotations

import numpy as np
from harness import Result, block, measure


def _matmul_flops_per_s(n: int, runs: int) -> tuple[float, object]:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    timing = measure(lambda: block(dot(a, b)), warmup=2, runs=runs)
    return 2.0 * n**3 / timing.median, timing


def _mid_config():
    from synthaug.diffusion_core import get_preset

    cfg = get_preset("tiny_base")
    cfg.model.image_size = 32
    cfg.model.model_channels = 64
    cfg.model.channel_mult = (1, 2, 2)
    cfg.model.num_res_blocks = 2
    cfg.model.attention_resolutions = (16, 8)
    cfg.model.cross_attention_resolutions = (16, 8)
    cfg.model.num_head_channels = 32
    cfg.model.num_groups = 32
    cfg.model.text_token_dim = 256
    cfg.train.batch_size = 8
    return cfg


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


def _train_step_bench(name: str, cfg, runs: int) -> tuple[float, float, float, object, int]:
    import jax
    import jax.numpy as jnp

    from synthaug.diffusion_core import create_train_state, make_model, make_train_step

    model = make_model(cfg)
    s = cfg.model.image_size
    b = int(cfg.train.batch_size)
    r = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(r.uniform(-1, 1, (b, s, s, 3)), jnp.float32),
        "text_emb": jnp.asarray(r.normal(size=(b, 8, cfg.model.text_dim)), jnp.float32),
        "text_mask": jnp.ones((b, 8), bool),
    }
    state = create_train_state(jax.random.key(0), model, cfg, batch)
    step = make_train_step(model, cfg)
    key = jax.random.key(1)
    compiled = step.lower(state, batch, key).compile()
    flops = _flops(compiled)
    # Plausibility: the step (forward, backward, optimizer, EMA) should cost about 3x the
    # forward pass alone (backward ~2x forward; optimizer and EMA are O(params)).
    t = jnp.full((b,), 0.5, jnp.float32)
    fwd = jax.jit(
        lambda p: model.apply(
            {"params": p}, batch["image"], t, batch["text_emb"], batch["text_mask"]
        )
    )
    fwd_flops = _flops(fwd.lower(state.params).compile())
    timing = measure(lambda: block(compiled(state, batch, key)), warmup=2, runs=runs)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    return flops, fwd_flops, timing.median, timing, n_params


def run(quick: bool) -> list[Result]:
    from synthaug.diffusion_core import get_preset

    runs = 5 if quick else 10
    peak, peak_timing = _matmul_flops_per_s(1024 if quick else 2048, runs)
    results = []
    models = [("tiny_base", get_preset("tiny_base"))]
    if not quick:  # the mid-size step takes about 90 s to compile: full runs only
        models.append(("mid_unet_32", _mid_config()))
    for name, cfg in models:
        flops, fwd_flops, sec, timing, n_params = _train_step_bench(name, cfg, runs)
        achieved = flops / sec
        if achieved > peak:
            raise RuntimeError(
                f"{name}: achieved {achieved:.3g} FLOP/s exceeds the measured matmul peak "
                f"{peak:.3g} FLOP/s: the FLOP count or the timing is wrong"
            )
        b = int(cfg.train.batch_size)
        results.append(
            Result(
                name=f"diffusion_core.train_step.{name}",
                metric="train steps/s",
                value=1.0 / sec,
                unit="steps/s",
                timing=timing,
                notes=f"{n_params:,} params, batch {b} at {cfg.model.image_size}px, CPU",
            )
        )
        results.append(
            Result(
                name=f"diffusion_core.train_flops.{name}",
                metric="achieved FLOP/s (XLA cost analysis) vs float32 matmul FLOP/s",
                value=achieved,
                unit="FLOP/s",
                peer="jnp.dot float32 matmul, same run",
                peer_value=peak,
                ratio=achieved / peak,
                timing=timing,
                peer_timing=peak_timing,
                notes=(
                    f"{flops / 1e9:.3f} GFLOP per train step (forward+backward+optimizer+EMA), "
                    f"{fwd_flops / 1e9:.3f} GFLOP per forward pass "
                    f"(step/forward = {flops / fwd_flops:.2f})"
                ),
            )
        )
    return results


if __name__ == "__main__":
    for r in run(quick=True):
        print(r.as_dict())
