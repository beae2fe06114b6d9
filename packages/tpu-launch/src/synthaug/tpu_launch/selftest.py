"""A self-test of a multi-process setup: a global psum and sharded training of a tiny model.

Run it on every process of a job (``synthaug-launch local -n 2 -k 2 -- synthaug-launch
selftest``, or as the command of ``synthaug-launch tpu``). It checks that every process
sees every device, that a cross-process psum is right, and trains a two-layer MLP a few SGD
steps under several meshes; the final parameters do not depend on the mesh, the number of
processes or the number of devices (up to float rounding), which the package tests check
against a one-device run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.io import atomic_path

from .distributed import add_distributed_flags, initialize, initialize_from_flags
from .mesh import make_mesh
from .sharding import (
    batch_spec,
    gather_to_host0,
    host_local_to_global,
    host_shard_info,
    num_batch_slices,
    shard_params,
    shardings_for,
)

__all__ = [
    "TINY_RULES",
    "default_mesh_configs",
    "global_process_psum",
    "main",
    "synthetic_data",
    "tiny_mlp_init",
    "tiny_mlp_loss",
    "train_tiny",
]

#: Sharding rules of the tiny MLP: FSDP over the input dim, tensor parallel over hidden.
TINY_RULES: tuple[tuple[str, P], ...] = (
    (r"dense1/kernel$", P("fsdp", "model")),
    (r"dense1/bias$", P("model")),
    (r"dense2/kernel$", P("model", "fsdp")),
)

IN_DIM, HIDDEN, OUT_DIM = 8, 16, 4


def tiny_mlp_init(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Parameters of an ``8 -> 16 -> 4`` MLP (tanh) as host numpy arrays.

    Drawn with numpy from ``seed`` so that every host computes the same values without
    compiling anything (each host then copies in only its own slices).

    Args:
      seed: numpy seed.

    Returns:
      ``{"dense1": {"kernel", "bias"}, "dense2": {"kernel", "bias"}}`` float32 arrays.
    """
    rng = np.random.default_rng(seed)
    return {
        "dense1": {
            "kernel": (rng.standard_normal((IN_DIM, HIDDEN)) / np.sqrt(IN_DIM)).astype(np.float32),
            "bias": np.zeros((HIDDEN,), np.float32),
        },
        "dense2": {
            "kernel": (rng.standard_normal((HIDDEN, OUT_DIM)) / np.sqrt(HIDDEN)).astype(np.float32),
            "bias": np.zeros((OUT_DIM,), np.float32),
        },
    }


def tiny_mlp_loss(params: Mapping[str, Any], batch: Mapping[str, jax.Array]) -> jax.Array:
    """Mean squared error of the MLP on ``batch = {"x": (B, 8), "y": (B, 4)}``."""
    h = jnp.tanh(batch["x"] @ params["dense1"]["kernel"] + params["dense1"]["bias"])
    pred = h @ params["dense2"]["kernel"] + params["dense2"]["bias"]
    return jnp.mean((pred - batch["y"]) ** 2)


def synthetic_data(*, steps: int, global_batch: int, seed: int) -> dict[str, np.ndarray]:
    """The global training data of every step, identical on every host.

    Args:
      steps: number of steps.
      global_batch: examples per step.
      seed: numpy seed.

    Returns:
      ``{"x": (steps, global_batch, 8), "y": (steps, global_batch, 4)}`` float32 arrays.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, global_batch, IN_DIM)).astype(np.float32)
    w = rng.standard_normal((IN_DIM, OUT_DIM)).astype(np.float32)
    y = np.sin(x @ w).astype(np.float32)
    return {"x": x, "y": y}


def train_tiny(
    mesh: Mesh,
    *,
    steps: int = 3,
    global_batch: int = 16,
    learning_rate: float = 0.1,
    seed: int = 0,
    rules: Sequence[tuple[str, P]] = TINY_RULES,
) -> tuple[Any, np.ndarray]:
    """Train the tiny MLP with SGD on ``mesh``, each host feeding only its batch shard.

    Args:
      mesh: the device mesh (axes among data, fsdp, model).
      steps: number of SGD steps.
      global_batch: examples per step over all hosts.
      learning_rate: SGD step size.
      seed: seed of the parameters (and, plus one, of the data).
      rules: parameter sharding rules.

    Returns:
      ``(params, losses)``: the final params as global arrays sharded by ``rules``, and the
      loss of every step (numpy, shape ``(steps,)``).

    Raises:
      ValueError: ``global_batch`` not divisible by the number of batch slices.
    """
    spec = batch_spec(mesh)
    n_slices = num_batch_slices(mesh, spec)
    index, count = host_shard_info(mesh, spec=spec)
    if global_batch % n_slices or global_batch % count:
        raise ValueError(
            f"global_batch={global_batch} must be divisible by the {n_slices} batch slices of "
            f"mesh {dict(mesh.shape)}"
        )
    per_host = global_batch // count
    params = shard_params(tiny_mlp_init(seed), rules, mesh)
    param_shardings = shardings_for(params, rules, mesh)
    data_sharding = NamedSharding(mesh, spec)
    replicated = NamedSharding(mesh, P())

    def step(p: Any, batch: Mapping[str, jax.Array]) -> tuple[Any, jax.Array]:
        loss, grads = jax.value_and_grad(tiny_mlp_loss)(p, batch)
        new = jax.tree_util.tree_map(lambda w, g: w - learning_rate * g, p, grads)
        return new, loss

    step_fn = jax.jit(
        step,
        in_shardings=(param_shardings, {"x": data_sharding, "y": data_sharding}),
        out_shardings=(param_shardings, replicated),
        donate_argnums=0,
    )
    data = synthetic_data(steps=steps, global_batch=global_batch, seed=seed + 1)
    losses = []
    for s in range(steps):
        local = {k: v[s, index * per_host : (index + 1) * per_host] for k, v in data.items()}
        params, loss = step_fn(params, host_local_to_global(local, mesh, spec))
        losses.append(loss)
    return params, np.asarray([float(np.asarray(loss.addressable_data(0))) for loss in losses])


def global_process_psum(mesh: Mesh) -> float:
    """Sum over every device of the mesh of ``process_index + 1``, computed with `psum`.

    Each device holds only its own process's index, so the right answer needs data from
    every process: ``devices_per_process * N * (N + 1) / 2`` for N processes of equal size.

    Args:
      mesh: the device mesh.

    Returns:
      The psum as a Python float (the same on every process).
    """
    axes = tuple(mesh.axis_names)
    sharding = NamedSharding(mesh, P(axes))
    n = mesh.devices.size
    local = [
        jax.device_put(np.full((1,), d.process_index + 1, np.float32), d)
        for d in sharding.addressable_devices
    ]
    order = {d: i for i, d in enumerate(sharding.addressable_devices)}
    shards = sorted(local, key=lambda a: order[next(iter(a.devices()))])
    x = jax.make_array_from_single_device_arrays((n,), sharding, shards)
    total = jax.jit(
        jax.shard_map(lambda v: jax.lax.psum(v, axes), mesh=mesh, in_specs=P(axes), out_specs=P())
    )(x)
    return float(np.asarray(total.addressable_data(0))[0])


def default_mesh_configs(num_devices: int) -> list[dict[str, int]]:
    """Meshes the self-test trains under: pure data parallel, plus model and FSDP splits.

    Args:
      num_devices: the total device count.

    Returns:
      Mesh axis configs for `make_mesh` (with 4 devices the last one is model-parallel only).
    """
    configs: list[dict[str, int]] = [{"data": -1, "fsdp": 1, "model": 1}]
    if num_devices % 2 == 0:
        configs.append({"data": -1, "fsdp": 1, "model": 2})
    if num_devices % 4 == 0:
        configs.append({"data": -1, "fsdp": 2, "model": 2})
        configs.append({"data": -1, "fsdp": 1, "model": 4})
    return configs


def _config_key(axes: Mapping[str, int]) -> str:
    return "_".join(f"{k}{v}" for k, v in axes.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the self-test in this process (one of the job's processes).

    Args:
      argv: command-line arguments (``--out``, ``--steps``, ``--global-batch``, ``--seed``
        and the multi-process flags of `add_distributed_flags`).

    Returns:
      0 when every check passes, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="synthaug-launch selftest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default=None, help="write results.npz here (process 0)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--global-batch", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    add_distributed_flags(parser)
    args = parser.parse_args(argv)

    settings = initialize_from_flags(args)
    pid, nproc = jax.process_index(), jax.process_count()
    print(
        f"process {pid}/{nproc} ({settings.mode}): {jax.local_device_count()} local of "
        f"{jax.device_count()} {jax.devices()[0].platform} devices",
        flush=True,
    )
    ok = initialize() is settings  # a second call joins the same run
    if not ok:
        print("a second initialize() returned different settings", flush=True)
    mesh = make_mesh({"data": -1})
    total = global_process_psum(mesh)
    per_process = [sum(d.process_index == p for d in jax.devices()) for p in range(nproc)]
    expected = float(sum((p + 1) * k for p, k in enumerate(per_process)))
    print(f"psum of process_index + 1 over devices: {total:g} (expected {expected:g})", flush=True)
    ok &= total == expected

    global_batch = args.global_batch or 4 * jax.device_count()
    results: dict[str, np.ndarray] = {"psum": np.asarray(total)}
    first_losses: np.ndarray | None = None
    for axes in default_mesh_configs(jax.device_count()):
        mesh = make_mesh(axes)
        params, losses = train_tiny(
            mesh, steps=args.steps, global_batch=global_batch, seed=args.seed
        )
        index, count = host_shard_info(mesh)
        key = _config_key(dict(mesh.shape))
        print(
            f"mesh {dict(mesh.shape)}: host shard {index}/{count}, losses "
            + " ".join(f"{v:.6f}" for v in losses),
            flush=True,
        )
        ok &= bool(np.all(np.isfinite(losses)))
        # The mesh must not change the numbers (beyond float rounding).
        first_losses = losses if first_losses is None else first_losses
        if not np.allclose(losses, first_losses, rtol=1e-4, atol=1e-6):
            print(f"losses under mesh {dict(mesh.shape)} differ from the first mesh", flush=True)
            ok = False
        gathered = gather_to_host0(params)
        if gathered is not None:
            for path, leaf in jax.tree_util.tree_flatten_with_path(gathered)[0]:
                name = "/".join(str(getattr(k, "key", k)) for k in path)
                results[f"{key}/{name}"] = leaf
            results[f"{key}/losses"] = losses
    if args.out and pid == 0:
        with atomic_path(os.path.join(args.out, "results.npz")) as tmp, open(tmp, "wb") as f:
            np.savez(f, **results)
    print("selftest " + ("passed" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
