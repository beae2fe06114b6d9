"""ResNet-50 training throughput on CPU: synthaug.classifiers (JAX/Flax) vs torchvision.

One optimiser step (forward, cross-entropy, backward, SGD + Nesterov momentum 0.9 with
weight decay 1e-4) on a batch of 224x224 images, both sides in this process. Full mode:
batch 32; quick mode: batch 8. Reported: images/second (median step time) and the ratio
JAX / PyTorch (> 1: JAX is faster).

    python tools/bench/run.py --only classifiers [--quick]
"""

from __future__ import annotations

import os

import numpy as np
from harness import Result, block, measure


def _jax_step(batch: int, size: int):
    import jax

    from synthaug.classifiers import create_train_state, get_model, make_train_step, resnet_recipe

    cfg = resnet_recipe(batch, 90, model="resnet50")
    model = get_model("resnet50")
    state = create_train_state(model, cfg, jax.random.PRNGKey(0))
    step = make_train_step(model, cfg, donate=True)
    rng = np.random.default_rng(0)
    data = {
        "images": jax.device_put(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)),
        "labels": jax.device_put(rng.integers(0, 1000, batch).astype(np.int32)),
    }
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], data)
        block(metrics["loss"])

    return run


def _torch_step(batch: int, size: int):
    import torch
    import torchvision

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    model.train()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()

    return run


def run(quick: bool) -> list[Result]:
    batch, size = (8, 224) if quick else (32, 224)
    warmup = 1  # the first call compiles; CPU steps at 224x224 take seconds each
    jax_fn = _jax_step(batch, size)
    t_jax = measure(jax_fn, warmup=warmup, runs=5)
    del jax_fn
    torch_fn = _torch_step(batch, size)
    t_torch = measure(torch_fn, warmup=warmup, runs=5)
    ips, peer_ips = batch / t_jax.median, batch / t_torch.median
    return [
        Result(
            name=f"classifiers.resnet50_train_step_b{batch}",
            metric=f"train images/s (batch {batch}, {size}x{size}, CPU)",
            value=ips,
            unit="img/s",
            peer="torchvision resnet50 + torch.optim.SGD",
            peer_value=peer_ips,
            ratio=ips / peer_ips,
            timing=t_jax,
            peer_timing=t_torch,
            notes=(
                "one SGD+Nesterov step incl. forward, backward and update; JAX side includes "
                "on-device uint8 normalisation; float32 on both sides"
            ),
        )
    ]
