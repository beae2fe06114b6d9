"""``synthaug plan``: the per-device memory of a training stage, without allocating it.

For a ``finetune`` or ``train-classifier`` config, on the config's mesh (``mesh.*``) and
hardware (``hardware``: ``"256 TPU-v4 chips (v4-512), ..."``), the plan gives per device the
bytes of the parameters, their EMA, the optimizer state (each sharded by ``sharding.rules``,
from ``jax.eval_shape``: nothing is allocated) and the temporaries of the compiled train step,
and says whether the sum fits the device's memory (TPU v4: 32 GiB of HBM).

The temporaries come from ahead-of-time compilation (``jit(step).lower(...).compile()
.memory_analysis()``) on simulated CPU devices: the mesh's model-parallel axes (``fsdp``,
``model``, ...) keep their sizes, the ``data`` axis becomes 1 and the batch is the per-device
batch of the real mesh times the simulated batch slices. Every device of a data-parallel mesh
runs the same program on its own rows, so this is the real step's per-device program, compiled
by XLA's CPU backend rather than the accelerator's (fusion and layouts differ: an estimate).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

from synthaug.pipeline.errors import ConfigError

__all__ = ["DEVICE_MEMORY_GIB", "format_plan", "parse_hardware", "plan"]

GIB = 1 << 30

#: Memory per device (GiB) of the accelerators a config's ``hardware`` may name.
DEVICE_MEMORY_GIB: dict[str, float] = {
    "tpu-v2": 8,
    "tpu-v3": 16,
    "tpu-v4": 32,
    "tpu-v5e": 16,
    "tpu-v5p": 95,
    "tpu-v6e": 32,
    "a100-40gb": 40,
    "a100-80gb": 80,
    "a100": 80,
    "h100": 80,
    "h200": 141,
}

_DEVICE_RE = re.compile(
    r"(tpu[- ]?v\d+[a-z]?|a100(?:[- ]?(?:40|80)\s?gb)?|h100|h200)", re.IGNORECASE
)
_COUNT_RE = re.compile(
    r"(\d+)\s*(?:x\s*)?(?:tpu[- ]?v\d+[a-z]?|a100\S*|h100\S*|h200\S*|gpus?|devices?|chips?)\b",
    re.IGNORECASE,
)


def parse_hardware(text: str) -> tuple[int | None, float | None, str | None]:
    """``(device count, GiB per device, device name)`` from a config's ``hardware`` text.

    ``"256 TPU-v4 chips (v4-512), batch 2048"`` gives ``(256, 32, "tpu-v4")``; parts the text
    does not state are ``None``.
    """
    count = mem = name = None
    m = _COUNT_RE.search(text or "")
    if m:
        count = int(m.group(1))
    d = _DEVICE_RE.search(text or "")
    if d:
        name = re.sub(r"\s+", "", d.group(1).lower()).replace("tpuv", "tpu-v").replace(" ", "-")
        if name.startswith("a100") and name != "a100":
            name = "a100-40gb" if "40" in name else "a100-80gb"
        mem = DEVICE_MEMORY_GIB.get(name)
    return count, mem, name


def _plain(x: Any) -> Any:
    return x.to_dict() if hasattr(x, "to_dict") else x


def _mesh_axes(cfg) -> dict[str, int]:
    from synthaug import tpu_launch as tl

    if "mesh" in cfg:
        return dict(_plain(cfg.mesh))
    return dict(tl.DEFAULT_AXES)


def _rules(cfg) -> list:
    from synthaug import tpu_launch as tl

    if "sharding" in cfg and "rules" in cfg.sharding:
        return tl.rules_from_config(cfg.sharding.rules)
    return []


def _spec_divisor(spec, shape, mesh_sizes: Mapping[str, int]) -> int:
    """How many ways ``spec`` splits an array of ``shape`` (1 when it does not fit it)."""
    if len(spec) > len(shape):
        return 1
    total = 1
    for dim, entry in enumerate(spec):
        if entry is None:
            continue
        axes = entry if isinstance(entry, tuple | list) else (entry,)
        n = math.prod(mesh_sizes.get(a, 1) for a in axes)
        if shape[dim] % n:
            return 1
        total *= n
    return total


def _sharded_specs(tree: Any, rules, mesh_sizes: Mapping[str, int]) -> Any:
    """A `PartitionSpec` per leaf: the first matching rule where it fits, else replicated.

    Parameters must fit their rule (the train step would fail otherwise); optimizer-state
    leaves (factored Adafactor moments, counters) that a parameter rule does not fit are
    replicated, as the compiler would keep them.
    """
    import jax
    from jax.sharding import PartitionSpec as P

    from synthaug import tpu_launch as tl

    def spec_of(path, leaf):
        spec = tl.match_rule(tl.sharding._path_str(path), rules) if rules else P()
        shape = tuple(getattr(leaf, "shape", ()))
        return spec if _spec_divisor(spec, shape, mesh_sizes) > 1 or not len(spec) else P()

    return jax.tree_util.tree_map_with_path(spec_of, tree)


def _bytes_per_device(tree: Any, specs: Any, mesh_sizes: Mapping[str, int]) -> tuple[int, int]:
    """``(bytes on one device, number of elements)`` of a tree of shapes with its specs."""
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    leaves = jax.tree.leaves(tree)
    spec_leaves = jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, P))
    total = count = 0
    for leaf, spec in zip(leaves, spec_leaves, strict=True):
        shape = tuple(leaf.shape)
        size = math.prod(shape)
        itemsize = 8 if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else 0
        itemsize = itemsize or np.dtype(leaf.dtype).itemsize
        total += size * itemsize // _spec_divisor(spec, shape, mesh_sizes)
        count += size
    return total, count


def _finetune_parts(cfg):
    """``(model, diffusion config, global batch, abstract batch of size 1 per row fn)``."""
    from synthaug import diffusion_core as dc
    from synthaug.pipeline import models

    dcfg = models.diffusion_config(cfg)  # the config's own diffusion-core sections
    return dc.make_model(dcfg), dcfg, int(dcfg.train.batch_size)


def _finetune_shapes(model, dcfg, batch: int, text_len: int):
    import jax
    import jax.numpy as jnp

    from synthaug import diffusion_core as dc

    s = int(dcfg.model.image_size)
    b = {
        "image": jax.ShapeDtypeStruct((batch, s, s, 3), jnp.float32),
        "text_emb": jax.ShapeDtypeStruct((batch, text_len, int(dcfg.model.text_dim)), jnp.float32),
        "text_mask": jax.ShapeDtypeStruct((batch, text_len), jnp.bool_),
    }
    if dc.is_super_resolution(dcfg):
        low = int(dcfg.diffusion.lowres_size)
        b["lowres"] = jax.ShapeDtypeStruct((batch, low, low, 3), jnp.float32)
    key = jax.eval_shape(lambda: jax.random.key(0))
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype), b)
    state = jax.eval_shape(lambda r, e: dc.create_train_state(r, model, dcfg, e), key, one)
    return state, b, key


def _classifier_parts(cfg):
    from synthaug import classifiers as cl
    from synthaug.pipeline.classify import recipe_config

    recipe = recipe_config(cfg)
    return cl.model_from_config(recipe), recipe, int(recipe.batch_size)


def _classifier_shapes(model, recipe, batch: int):
    import jax
    import jax.numpy as jnp

    from synthaug import classifiers as cl

    size = int(recipe.image_size)
    b = {
        "images": jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8),
        "labels": jax.ShapeDtypeStruct((batch,), jnp.int32),
    }
    key = jax.eval_shape(lambda: jax.random.key(0))
    state = jax.eval_shape(
        lambda r: cl.create_train_state(model, recipe, r, steps_per_epoch=1000), key
    )
    return state, b


def _simulated_devices(n: int):
    import jax
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        jax.config.update("jax_num_cpu_devices", max(n, int(jax.config.jax_num_cpu_devices)))
    devices = jax.devices("cpu")
    if len(devices) < n:
        return None
    return devices[:n]


def _compile_step(stage, model, scfg, state, state_specs, sim_axes, per_device, text_len):
    """Temporaries (bytes per device) of the train step compiled for the simulated mesh."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from synthaug import tpu_launch as tl

    n = math.prod(sim_axes.values())
    devices = _simulated_devices(n)
    if devices is None:
        return None, f"needs {n} CPU devices, this process has fewer"
    mesh = tl.make_mesh(sim_axes, devices=devices)
    slices = tl.num_batch_slices(mesh)
    batch = per_device * slices
    with_sharding = lambda tree, specs: jax.tree.map(  # noqa: E731
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, s)),
        tree,
        specs,
        is_leaf=lambda x: isinstance(x, P),
    )
    if stage == "finetune":
        from synthaug import diffusion_core as dc

        _, b, key = _finetune_shapes(model, scfg, batch, text_len)
        # The step as `train` compiles it: explicit shardings (the gradient sums of
        # `train.grad_accum_steps` are placed as the parameters are).
        named = jax.tree.map(
            lambda s: NamedSharding(mesh, s), state_specs, is_leaf=lambda x: isinstance(x, P)
        )
        step = dc.make_train_step(model, scfg, donate=True, mesh=mesh, shardings=named)
        args: tuple = (state, b, key)
    else:
        from synthaug import classifiers as cl

        _, b = _classifier_shapes(model, scfg, batch)
        step = cl.make_train_step(model, scfg, steps_per_epoch=1000, donate=True)
        args = (state, b)
    bspec = tl.batch_spec(mesh)
    b_sh = jax.tree.map(lambda x: P(*bspec, *([None] * (x.ndim - 1))), b)
    placed = [with_sharding(state, state_specs), with_sharding(b, b_sh)]
    if len(args) == 3:
        placed.append(jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=NamedSharding(mesh, P())))
        placed.append(None)  # no text table: the batch carries the text embeddings
    # A classifier step is a shared jitted function with its static spec bound by a partial.
    if isinstance(step, functools.partial):
        compiled = step.func.lower(*placed, **step.keywords).compile()
    else:
        compiled = step.lower(*placed).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        return None, "the compiler gave no memory analysis"
    desc = (
        f"compiled for a simulated mesh {dict(mesh.shape)} of {n} CPU device(s), batch "
        f"{batch} ({per_device} per batch slice)"
    )
    return int(stats.temp_size_in_bytes), desc


def plan(
    cfg,
    *,
    devices: int | None = None,
    device_memory_gib: float | None = None,
    compile_step: bool = True,
) -> dict[str, Any]:
    """The per-device memory plan of a ``finetune`` or ``train-classifier`` config.

    Args:
      cfg: a validated stage config.
      devices: the device count (default: the count ``cfg.hardware`` states, else 1).
      device_memory_gib: memory per device (default: that of the accelerator
        ``cfg.hardware`` names, e.g. 32 for TPU v4).
      compile_step: also compile the train step on simulated CPU devices for its
        temporaries (see the module docstring); False gives the state sizes only.

    Returns:
      A dict with the mesh, the batch, per-device bytes (``params``, ``ema``,
      ``optimizer``, ``temporaries``, ``total``) and ``fits`` (None when the memory is
      unknown).

    Raises:
      ConfigError: another stage, a mesh that does not fit the device count, a global batch
        the mesh's batch slices do not divide, or a sharding rule that does not fit.
    """
    from synthaug import tpu_launch as tl

    stage = cfg.stage
    if stage not in ("finetune", "train-classifier"):
        raise ConfigError(
            f"plan covers finetune and train-classifier configs, got a {stage!r} config"
        )
    hw = str(cfg.get("hardware", "") or "")
    hw_count, hw_mem, hw_name = parse_hardware(hw)
    n_dev = int(devices or hw_count or 1)
    mem = device_memory_gib if device_memory_gib is not None else hw_mem
    axes = _mesh_axes(cfg)
    try:
        sizes = tl.resolve_mesh_shape(axes, num_devices=n_dev)
    except tl.MeshShapeError as e:
        raise ConfigError(f"config.mesh: {e}") from None
    sim_axes = {a: (1 if a == "data" else n) for a, n in sizes.items()}
    if compile_step:  # before anything starts JAX's backends
        _simulated_devices(math.prod(sim_axes.values()))
    rules = _rules(cfg)
    text_len = int(cfg.text.max_length) if "text" in cfg else 128
    if stage == "finetune":
        model, scfg, global_batch = _finetune_parts(cfg)
        state, _, _ = _finetune_shapes(model, scfg, 1, text_len)
        parts = {"params": state.params, "ema": state.ema_params, "optimizer": state.opt_state}
    else:
        model, scfg, global_batch = _classifier_parts(cfg)
        state, _ = _classifier_shapes(model, scfg, 1)
        parts = {
            "params": {"params": state.params, "batch_stats": state.batch_stats},
            "ema": None,
            "optimizer": state.opt_state,
        }
    # Parameters must fit their rule (as the train step requires).
    try:
        tl.partition_specs(state.params, rules, mesh=_FakeMesh(sizes))
    except tl.ShardingRuleError as e:
        raise ConfigError(f"config.sharding.rules: {e}") from None
    result: dict[str, Any] = {
        "stage": stage,
        "devices": n_dev,
        "device": hw_name,
        "device_memory_gib": mem,
        "mesh": sizes,
        "global_batch": global_batch,
        "bytes": {},
        "param_count": 0,
    }
    for name, tree in parts.items():
        if tree is None:
            result["bytes"][name] = 0
            continue
        specs = _sharded_specs(tree, rules, sizes)
        nbytes, count = _bytes_per_device(tree, specs, sizes)
        result["bytes"][name] = nbytes
        if name == "params":
            result["param_count"] = count
    batch_axes = [a for a in tl.DATA_AXES if a in sizes]
    slices = math.prod(sizes[a] for a in batch_axes)
    if global_batch % slices:
        raise ConfigError(
            f"the global batch {global_batch} is not divisible by the mesh's {slices} batch "
            f"slices ({' x '.join(f'{a}={sizes[a]}' for a in batch_axes)})"
        )
    per_device = global_batch // slices
    result["per_device_batch"] = per_device
    result["temporaries_note"] = "not compiled (--no-compile)"
    temp = None
    if compile_step:
        state_specs = _sharded_specs(state, rules, sizes)
        temp, note = _compile_step(
            stage, model, scfg, state, state_specs, sim_axes, per_device, text_len
        )
        result["temporaries_note"] = note
    result["bytes"]["temporaries"] = temp
    total = sum(v for v in result["bytes"].values() if v)
    result["bytes"]["total"] = total
    result["fits"] = None if mem is None or temp is None else total <= mem * GIB
    return result


class _FakeMesh:
    """The axis sizes of a mesh, for `partition_specs`' checks, without devices."""

    def __init__(self, sizes: Mapping[str, int]):
        self.shape = dict(sizes)
        self.axis_names = tuple(sizes)


def _fmt(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / (1 << 20):.1f} MiB"


def format_plan(result: Mapping[str, Any], *, source: str = "") -> str:
    """The plan as the lines ``synthaug plan`` prints."""
    b = result["bytes"]
    mesh = " x ".join(f"{a}={s}" for a, s in result["mesh"].items())
    mem = result["device_memory_gib"]
    lines = [
        f"plan of {result['stage']} {source}".rstrip(),
        f"devices: {result['devices']}"
        + (f" {result['device']}" if result["device"] else "")
        + (f", {mem:g} GiB each" if mem is not None else ", memory per device not stated"),
        f"mesh: {mesh}",
        f"global batch {result['global_batch']}: {result['per_device_batch']} per batch slice",
        f"parameters: {result['param_count']:,}",
        "per device:",
        f"  parameters         {_fmt(b['params'])}",
        f"  EMA                {_fmt(b['ema']) if b['ema'] else '— (none)'}",
        f"  optimizer state    {_fmt(b['optimizer'])}",
        f"  step temporaries   {_fmt(b['temporaries'])}  ({result['temporaries_note']})",
        f"  total              {_fmt(b['total'])}",
    ]
    if result["fits"] is None:
        why = "memory per device unknown" if mem is None else "temporaries not compiled"
        lines.append(f"fits: unknown ({why})")
    else:
        pct = 100 * b["total"] / (mem * GIB)
        verdict = "yes" if result["fits"] else "NO"
        lines.append(f"fits: {verdict} ({_fmt(b['total'])} of {mem:g} GiB per device, {pct:.0f}%)")
    return "\n".join(lines)


def add_plan_parser(sub) -> None:
    """Register ``synthaug plan`` on the command line's subparsers."""
    p = sub.add_parser(
        "plan",
        help="per-device memory of a finetune or train-classifier config (nothing allocated)",
        description=(
            "Per device: bytes of parameters, EMA, optimizer state and the compiled train "
            "step's temporaries for the config's mesh and hardware, and whether they fit."
        ),
    )
    p.add_argument("--config", default=None, help="path.py[:variant] or a config name")
    p.add_argument("--devices", type=int, default=None, help="device count (default: hardware)")
    p.add_argument("--device-memory-gib", type=float, default=None, help="memory per device (GiB)")
    p.add_argument(
        "--no-compile", action="store_true", help="skip compiling the step (no temporaries)"
    )


def run_plan(args, overrides) -> int:
    """``synthaug plan``: print the plan of ``args.config``; returns the exit code."""
    from synthaug.pipeline import config as config_lib

    if not args.config:
        raise ConfigError("plan needs --config: a finetune or train-classifier config")
    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices must be >= 1, got {args.devices}")
    if args.device_memory_gib is not None and not args.device_memory_gib > 0:
        raise ConfigError(f"--device-memory-gib must be > 0, got {args.device_memory_gib}")
    stage = config_lib.load_config_file(args.config).get("stage")
    if stage not in ("finetune", "train-classifier"):
        raise ConfigError(
            f"plan covers finetune and train-classifier configs; {args.config!r} is a "
            f"{stage!r} config"
        )
    cfg = config_lib.load_config(args.config, stage, overrides)
    result = plan(
        cfg,
        devices=args.devices,
        device_memory_gib=args.device_memory_gib,
        compile_step=not args.no_compile,
    )
    print(format_plan(result, source=args.config))
    return 0
