"""ResNet-50 training throughput: synthaug.classifiers (JAX/Flax) vs torchvision.

On the CPU by default; where JAX's default backend is a GPU both sides run on it.

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


def _torch_step(batch: int, size: int, device: str):
    import torch
    import torchvision

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().to(device)
    model.train()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()  # waits for the device

    return run


def run(quick: bool) -> list[Result]:
    import jax

    backend = jax.default_backend()
    # On a GPU machine both sides run on the GPU (torch through CUDA), else both on the CPU.
    device = "cuda" if backend == "gpu" else "cpu"
    batch, size = (8, 224) if quick else (32, 224)
    warmup = 1 if device == "cpu" else 3  # CPU steps at 224x224 take seconds each
    runs = 5 if device == "cpu" else 20
    jax_fn = _jax_step(batch, size)
    t_jax = measure(jax_fn, warmup=warmup, runs=runs)
    del jax_fn
    torch_fn = _torch_step(batch, size, device)
    t_torch = measure(torch_fn, warmup=warmup, runs=runs)
    ips, peer_ips = batch / t_jax.median, batch / t_torch.median
    return [
        Result(
            name=f"classifiers.resnet50_train_step_b{batch}" + ("_gpu" if device == "cuda" else ""),
            metric=f"train images/s (batch {batch}, {size}x{size}, {device.upper()})",
            value=ips,
            unit="img/s",
            peer="torchvision resnet50 + torch.optim.SGD",
            peer_value=peer_ips,
            ratio=ips / peer_ips,
            target=1.0,
            timing=t_jax,
            peer_timing=t_torch,
            notes=(
                "one SGD+Nesterov step incl. forward, backward and update; JAX side includes "
                "on-device uint8 normalisation; float32 on both sides (framework default "
                "matmul precision)"
            ),
        )
    ]
