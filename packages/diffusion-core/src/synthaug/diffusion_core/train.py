"""Training: the train state, optimizers, the jitted train step, EMA and the train loop."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.diffusion_core.configs import is_super_resolution
from synthaug.diffusion_core.diffusion import diffusion_loss, upsample_lowres
from synthaug.diffusion_core.lowres import lowres_settings
from synthaug.diffusion_core.schedules import get_log_snr_fn
from synthaug.diffusion_core.sharding import batch_sharding, param_path, state_shardings
from synthaug.io.checkpoint import Checkpointer

Array = jnp.ndarray
Batch = Mapping[str, Array]

log = logging.getLogger(__name__)

__all__ = [
    "NonFiniteLossError",
    "TrainState",
    "accumulated_value_and_grad",
    "create_train_state",
    "ema_update",
    "freeze_labels",
    "learning_rate_schedule",
    "make_optimizer",
    "make_train_step",
    "param_path",
    "state_from_params",
    "train",
]


class NonFiniteLossError(FloatingPointError):
    """The loss (or gradient norm) became NaN or Inf; the message names the step."""

    def __init__(self, step: int, loss: float, grad_norm: float):
        super().__init__(
            f"non-finite loss at step {step} (loss={loss}, grad_norm={grad_norm}); training "
            "stopped before the parameters, EMA or checkpoint were updated"
        )
        self.step = step


@flax.struct.dataclass
class TrainState:
    """The whole training state, a pytree.

    Attributes:
      step: number of optimizer steps taken (int32 scalar).
      params: the network parameters.
      ema_params: their exponential moving average.
      opt_state: the optimizer state.
    """

    step: Array
    params: Any
    ema_params: Any
    opt_state: Any


def freeze_labels(params: Any, patterns: Iterable[str]) -> Any:
    """Label each parameter ``"frozen"`` (its path matches a regex) or ``"trainable"``."""
    regexes = [re.compile(p) for p in patterns]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: (
            "frozen" if any(r.search(param_path(path)) for r in regexes) else "trainable"
        ),
        params,
    )


def learning_rate_schedule(config) -> optax.Schedule:
    """Linear warmup to the peak learning rate, then cosine decay (``config.optimizer``)."""
    opt = config.optimizer
    warmup = int(opt.warmup_steps)
    decay = max(int(opt.decay_steps), warmup + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=float(opt.learning_rate),
        warmup_steps=warmup,
        decay_steps=decay,
        end_value=float(opt.end_learning_rate),
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """The optimizer of ``config.optimizer``: Adafactor (base) or Adam (SR).

    Gradients are clipped by global norm (``grad_clip``), the learning rate follows
    :func:`learning_rate_schedule`; parameters matching ``config.train.freeze`` get zero
    updates (and no optimizer state). With ``flatten``, clipping and Adam run on one vector
    of all trainable parameters (``optax.flatten``: the same update up to rounding, in far
    fewer ops, so a faster compilation); Adafactor is never flattened.
    """
    opt = config.optimizer
    lr = learning_rate_schedule(config)
    name = opt.name
    if name == "adam":
        if opt.weight_decay:
            base = optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
        else:
            base = optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    elif name == "adafactor":
        base = optax.adafactor(
            learning_rate=lr,
            multiply_by_parameter_scale=False,
            weight_decay_rate=opt.weight_decay or None,
        )
    else:
        raise ValueError(f"optimizer.name must be 'adam' or 'adafactor', got {name!r}")
    # Adafactor factors each matrix's second moment: a flat vector has no matrices, so it is
    # never flattened (``flatten`` changes the speed of compilation, not the algorithm).
    flatten = bool(opt.get("flatten", False)) and name == "adam"
    parts = []
    if opt.grad_clip:
        parts.append(optax.clip_by_global_norm(float(opt.grad_clip)))
    tx = optax.chain(*parts, base)
    if flatten:
        tx = optax.flatten(tx)
    freeze = tuple(config.train.get("freeze", ()) or ())
    if freeze:
        tx = optax.multi_transform(
            {"trainable": tx, "frozen": optax.set_to_zero()},
            lambda params: freeze_labels(params, freeze),
        )
    return tx


def ema_update(ema_params: Any, params: Any, *, decay: float, frozen: Any = None) -> Any:
    """``ema <- decay * ema + (1 - decay) * params`` (frozen leaves keep their EMA)."""

    def upd(e, p):
        return (decay * e.astype(jnp.float32) + (1.0 - decay) * p.astype(jnp.float32)).astype(
            e.dtype
        )

    if frozen is None:
        return jax.tree.map(upd, ema_params, params)
    return jax.tree.map(
        lambda e, p, lab: e if lab == "frozen" else upd(e, p), ema_params, params, frozen
    )


def _init_inputs(model, config, batch: Batch):
    x = jnp.asarray(batch["image"], jnp.float32)
    b = x.shape[0]
    t = jnp.zeros((b,), jnp.float32)
    text_emb = batch.get("text_emb")
    text_mask = batch.get("text_mask")
    kw = {}
    if is_super_resolution(config):
        if "lowres" not in batch:
            raise KeyError("batch['lowres']: a super-resolution model needs the low-res image")
        kw["lowres"] = upsample_lowres(jnp.asarray(batch["lowres"], jnp.float32), size=x.shape[1:3])
        kw["aug_level"] = jnp.zeros((b,), jnp.float32)
    if config.model.get("num_classes", None) is not None:
        kw["labels"] = jnp.asarray(batch.get("labels", np.zeros((b,), np.int32)), jnp.int32)
    return (x, t, text_emb, text_mask), kw


def create_train_state(rng: jax.Array, model, config, sample_batch: Batch) -> TrainState:
    """Initialise parameters, EMA (a copy) and optimizer state.

    Args:
      rng: key for the parameter initialisation.
      model: the Flax module (from :func:`make_model`).
      config: the full config (``optimizer``, ``train`` sections are used).
      sample_batch: a batch with the shapes of training (only the shapes of one example
        matter; the initialisation runs on the first example).

    Returns:
      A :class:`TrainState` at step 0.
    """
    return _init_program(model, config, sample_batch)(rng)


def _init_program(model, config, sample_batch: Batch, out_shardings: Any = None):
    """``init(rng) -> TrainState``, a jitted function (``init.eval_shape(rng)`` traces it).

    With ``out_shardings`` (a ``TrainState`` of shardings) the state is born sharded.
    """
    args, kw = _init_inputs(model, config, sample_batch)
    # The parameters do not depend on the batch size: initialise on one example, so that
    # one compiled initialisation serves every batch size.
    args, kw = jax.tree.map(lambda a: a[:1], (args, kw))
    # One compiled program: the parameters, their EMA copy and the optimizer state (built
    # op by op outside jit, the optimizer state alone took seconds of small compilations).
    tx = make_optimizer(config)

    def fn(r, a, k):
        return _initial_state(model.init(r, *a, **k)["params"], tx)

    jitted = jax.jit(fn) if out_shardings is None else jax.jit(fn, out_shardings=out_shardings)

    def init(rng):
        return jitted(rng, args, kw)

    init.eval_shape = lambda rng: jax.eval_shape(fn, rng, args, kw)
    return init


def _initial_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=tx.init(params),
    )


def state_from_params(params: Any, config) -> TrainState:
    """A step-0 :class:`TrainState` around given parameters (EMA = a copy of them)."""
    tx = make_optimizer(config)
    return jax.jit(_initial_state, static_argnums=1)(params, tx)


def _lookup_text(batch: Batch, text_table: Mapping[str, Array] | None) -> dict:
    """``batch`` with ``text_emb``/``text_mask`` gathered from the table by ``labels``."""
    batch = dict(batch)
    if text_table is not None and "labels" in batch:
        labels = batch["labels"]  # kept: a class-conditional model reads them too
        batch["text_emb"] = jnp.take(text_table["text_emb"], labels, axis=0)
        batch["text_mask"] = jnp.take(text_table["text_mask"], labels, axis=0)
    return batch


def accumulated_value_and_grad(
    loss_fn: Callable, steps: int, *, grad_shardings: Any = None
) -> Callable:
    """``(params, batch, rng) -> (loss, grads)``, the batch split into ``steps`` micro-batches.

    ``loss_fn(params, batch, rng) -> (loss, aux)`` is a mean over the batch. With
    ``steps > 1`` the batch (every entry's leading axis, ``B``) is split into ``steps``
    micro-batches of ``B / steps`` examples, micro-batch ``i`` taking the rows ``i, i +
    steps, i + 2 * steps, ...`` (so a batch split over devices stays split the same way in
    each micro-batch) and the key ``jax.random.fold_in(rng, i)``. Their losses and gradients
    are summed in float32 in a ``lax.scan`` (only one micro-batch's activations live at a
    time) and divided by ``steps``: for a loss that does not depend on the key, exactly the
    full batch's mean loss and gradient. ``grad_shardings`` (a tree of shardings like the
    parameters', e.g. FSDP's) places the running sums as the parameters are placed; without
    it the compiler may keep a full copy per device.

    Raises:
      ValueError: ``steps < 1``, or (when traced) a batch size that ``steps`` does not divide.
    """
    if steps < 1:
        raise ValueError(f"train.grad_accum_steps must be >= 1, got {steps}")
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if steps == 1:

        def single(params, batch, rng):
            (loss, _), grads = grad_fn(params, batch, rng)
            return loss, grads

        return single

    def accumulated(params, batch, rng):
        sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(batch)}
        if len(sizes) != 1 or next(iter(sizes)) % steps:
            raise ValueError(
                f"train.grad_accum_steps={steps} must divide the batch size, got batch "
                f"entries of leading sizes {sorted(sizes)}"
            )
        b = sizes.pop()
        micro = jax.tree.map(
            lambda x: jnp.moveaxis(x.reshape(b // steps, steps, *x.shape[1:]), 1, 0), batch
        )

        def one(carry, xs):
            i, mb = xs
            (loss, _), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
            total_loss, total = carry
            total = jax.tree.map(lambda t, g: t + g.astype(jnp.float32), total, grads)
            return (total_loss + loss.astype(jnp.float32), total), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        if grad_shardings is not None:
            zeros = jax.lax.with_sharding_constraint(zeros, grad_shardings)
        (loss, grads), _ = jax.lax.scan(
            one, (jnp.zeros((), jnp.float32), zeros), (jnp.arange(steps), micro)
        )
        grads = jax.tree.map(lambda g, p: (g / steps).astype(p.dtype), grads, params)
        return loss / steps, grads

    return accumulated


def _step_body(model, config, param_shardings: Any = None) -> Callable:
    """``body(state, batch, rng, text_table, guard) -> (state, metrics, guard)``.

    ``guard`` is None or a dict (``step``: -1 while every step was finite, else the first
    non-finite step; its ``loss`` and ``grad_norm``): once a step was not finite, every
    later step leaves the state unchanged, so the state stays at the last good step.
    """
    d = config.diffusion
    tx = make_optimizer(config)
    lr_fn = learning_rate_schedule(config)
    log_snr_fn = get_log_snr_fn(d.schedule)
    lowres_kw = lowres_settings(d)
    is_sr = is_super_resolution(config)
    decay = float(config.train.ema_decay)
    freeze = tuple(config.train.get("freeze", ()) or ())

    class_conditional = config.model.get("num_classes", None) is not None

    def apply_fn(params, x, t, text_emb, text_mask, *, lowres, aug_level, rng, labels=None):
        # Class labels reach only a class-conditional model (a text model's batch may carry
        # them too).
        kw = {"labels": labels} if class_conditional else {}
        return model.apply(
            {"params": params},
            x,
            t,
            text_emb,
            text_mask,
            lowres=lowres,
            aug_level=aug_level,
            train=True,
            rngs={"dropout": rng},
            **kw,
        )

    def loss_fn(params, batch, rng):
        return diffusion_loss(
            apply_fn,
            params,
            batch,
            rng=rng,
            log_snr_fn=log_snr_fn,
            prediction_type=d.prediction_type,
            p_uncond=float(d.p_uncond),
            is_sr=is_sr,
            aug_schedule=lowres_kw["aug_schedule"],
            aug_level_range=(float(d.aug_level_min), float(d.aug_level_max)),
            resize_method=lowres_kw["resize_method"],
            aug_order=lowres_kw["order"],
            label_dropout=float(d.get("label_dropout", 0.0)),
        )

    value_and_grad = accumulated_value_and_grad(
        loss_fn,
        int(config.train.get("grad_accum_steps", 1) or 1),
        grad_shardings=param_shardings,
    )

    def body(state: TrainState, batch: Batch, rng: jax.Array, text_table, guard):
        batch = _lookup_text(batch, text_table)
        loss, grads = value_and_grad(state.params, batch, rng)
        grad_norm = jnp.sqrt(
            sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(grads))
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        frozen = freeze_labels(params, freeze) if freeze else None
        ema = ema_update(state.ema_params, params, decay=decay, frozen=frozen)
        new = TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        ok = finite if guard is None else finite & (guard["step"] < 0)
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": lr_fn(state.step),
            "finite": finite,
        }
        if guard is not None:
            first = (guard["step"] < 0) & ~finite
            guard = {
                "step": jnp.where(first, state.step, guard["step"]),
                "loss": jnp.where(first, loss, guard["loss"]),
                "grad_norm": jnp.where(first, grad_norm, guard["grad_norm"]),
            }
        return new, metrics, guard

    return body


def make_train_step(
    model,
    config,
    *,
    donate: bool = False,
    mesh: Mesh | None = None,
    shardings: TrainState | None = None,
) -> Callable:
    """One jitted training step ``(state, batch, rng, text_table=None) -> (state, metrics)``.

    The loss is :func:`diffusion_loss` with the settings of ``config.diffusion``; the
    update is the optimizer of :func:`make_optimizer`, then the EMA (``config.train.ema_decay``).
    If the loss or the gradient norm is not finite, the returned state is the input state
    unchanged (parameters, EMA, optimizer state and step) and ``metrics["finite"]`` is False.

    The batch holds ``text_emb``/``text_mask``, or ``labels`` ``[B]`` and then
    ``text_table`` (``{"text_emb": [C, L, D], "text_mask": [C, L]}``, e.g. every class
    prompt's encoding) gives each example's text, looked up on the device.

    Args:
      model: the Flax module.
      config: the full config.
      donate: donate the input state's buffers (saves memory; the input state is unusable
        after the call).
      mesh: compile for this mesh: the batch split over its data axes (``data``, ``fsdp``),
        the state placed by ``shardings`` (default replicated), the key and the text table
        replicated; the compiler then reduces the gradients over the data axes. Without a
        mesh, a plain ``jax.jit`` that follows its inputs' placement.
      shardings: a ``TrainState`` of ``NamedSharding`` (see
        :func:`~synthaug.diffusion_core.sharding.state_shardings`).

    Returns:
      The jitted step function. ``metrics`` has ``loss``, ``grad_norm``,
      ``learning_rate`` and ``finite``.
    """
    param_shardings = shardings.params if isinstance(shardings, TrainState) else None
    body = _step_body(model, config, param_shardings)

    def step_fn(state, batch, rng, text_table=None):
        new, metrics, _ = body(state, batch, rng, text_table, None)
        return new, metrics

    return _jit_step(step_fn, donate, mesh, shardings, guarded=False)


def _jit_step(fn, donate: bool, mesh, shardings, *, guarded: bool):
    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return jax.jit(fn, donate_argnums=donate_argnums)
    repl = NamedSharding(mesh, P())
    if shardings is None:
        shardings = repl
    ins = (shardings, batch_sharding(mesh), repl, repl) + ((repl,) if guarded else ())
    outs = (shardings, repl) + ((repl,) if guarded else ())
    return jax.jit(fn, in_shardings=ins, out_shardings=outs, donate_argnums=donate_argnums)


def _batches(data, start: int = 0) -> tuple[Callable[[int], Batch], Batch]:
    """(batch_at(step), an example batch) from a callable ``data(step)`` or an iterable.

    A callable is asked for ``data(start)`` first (the step a resumed run starts at), so an
    input that positions itself (e.g. from a saved iterator state) reads nothing before it.
    An iterable can only be read in order: on resume its first ``start`` items are read and
    dropped.
    """
    if callable(data):
        return data, data(start)
    it = iter(data)
    first = next(it)
    state = {"next": 0, "it": itertools.chain([first], it)}

    def batch_at(step: int) -> Batch:
        if state["next"] < step:
            log.warning(
                "an iterable input is read from its start: skipping %d batches to reach step "
                "%d (pass a callable data(step) to resume without reading them)",
                step - state["next"],
                step,
            )
        while state["next"] < step:
            next(state["it"])
            state["next"] += 1
        state["next"] += 1
        return next(state["it"])

    return batch_at, first


def _global_batch(batch: Batch, sharding: NamedSharding) -> dict:
    """Each process's local batch -> one global array per entry, split over the data axes."""
    out = {}
    for name, x in batch.items():
        if isinstance(x, jax.Array) and x.sharding == sharding:
            out[name] = x
            continue
        try:
            out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(x))
        except ValueError as e:
            raise ValueError(
                f"batch[{name!r}] of shape {np.shape(x)}: cannot split it over the mesh's data "
                f"axes {sharding.spec} ({e})"
            ) from None
    return out


def _example(batch: Batch, text_table) -> dict:
    """One host example with the shapes the network is called with (for initialisation)."""
    ex = {k: np.asarray(v)[:1] for k, v in batch.items()}
    if "labels" in ex and text_table is not None:
        lab = ex["labels"]
        ex["text_emb"] = np.asarray(text_table["text_emb"])[lab]
        ex["text_mask"] = np.asarray(text_table["text_mask"])[lab]
    return ex


def _abstract(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=s), tree, shardings
    )


def train(
    model,
    config,
    data: Callable[[int], Batch] | Iterable[Batch],
    *,
    num_steps: int | None = None,
    checkpoint_dir: str | None = None,
    save_every: int | None = None,
    keep: int | None = None,
    seed: int | None = None,
    init_state: TrainState | None = None,
    callback: Callable[[int, dict[str, float], TrainState], None] | None = None,
    log_every: int | None = None,
    mesh: Mesh | None = None,
    param_specs: Any = None,
    text_table: Mapping[str, Any] | None = None,
) -> tuple[TrainState, list[dict[str, float]]]:
    """Train (or resume training) a diffusion model, on one device or a mesh of many.

    The step ``i`` uses the batch ``data(i)`` (or the i-th item of an iterable) and the key
    ``fold_in(train_key, i)``, so a run resumed from a checkpoint continues bit-for-bit as if
    it had never stopped (for a callable ``data``, or an iterable that yields the same items).

    The loop follows flax's ``examples/imagenet``: steps are dispatched without waiting for
    the device; the metrics (and the finiteness guard) are fetched to the host only on log
    steps, save steps and the last step.

    Multi-process (every process calls ``train`` alike, e.g. under ``synthaug-launch``):
    ``data(i)`` returns this process's part of the global batch (``B / process_count``
    examples for a ``data`` axis spanning all processes); the parts make one global batch
    (``jax.make_array_from_process_local_data``) split over the mesh's data axes. The
    checkpoint is written by all processes together and restored shard by shard.

    Args:
      model: the Flax module.
      config: the full config (``train`` section gives defaults for the arguments below).
      data: ``data(step) -> batch`` or an iterable of batches (NumPy arrays; this
        process's examples). A resumed run calls ``data(k)`` first (k: the restored step)
        and then ``data(k), data(k + 1), ...``, so a callable that can position itself
        reads none of the first k batches; an iterable is read and dropped up to step k.
        A batch holds ``image`` (and ``lowres`` for SR) and either ``text_emb``/``text_mask``
        or ``labels`` with ``text_table``.
      num_steps: train until this step (default ``config.train.num_steps``).
      checkpoint_dir: save every ``save_every`` steps (and at the end) keeping ``keep``;
        if it holds checkpoints, resume from the newest complete one.
      save_every, keep, seed, log_every: override ``config.train``.
      init_state: start from this state instead of a fresh initialisation (fine-tuning; see
        :func:`synthaug.diffusion_core.finetune.init_from_pretrained`); ignored when
        resuming from a checkpoint.
      callback: ``callback(step, metrics, state)`` every ``log_every`` steps and at the end.
      mesh: the device mesh (default: this process's first device). Axes ``data`` and/or
        ``fsdp`` split the batch; other axes (e.g. ``model``) are used only by ``param_specs``.
      param_specs: the parameters' ``PartitionSpec`` tree, or a function producing it from
        the abstract parameters (e.g. ``lambda p: tpu_launch.partition_specs(p, rules)``),
        placing the parameters, their EMA and the optimizer moments (see
        :mod:`synthaug.diffusion_core.sharding`); default: all replicated (data parallelism).
      text_table: ``{"text_emb": [C, L, D], "text_mask": [C, L]}``: batches carry
        ``labels`` ``[B]`` and each example's text is looked up on the device.

    Returns:
      ``(state, history)``: the final state and the logged metrics (dicts with ``step``).

    Raises:
      NonFiniteLossError: a NaN/Inf loss or gradient; the parameters and EMA stay at the
        last good step, and no checkpoint after it is written.
      synthaug.io.checkpoint.CheckpointError: the checkpoint directory holds steps but none
        is complete.
    """
    tc = config.train
    num_steps = int(tc.num_steps if num_steps is None else num_steps)
    save_every = int(tc.save_every if save_every is None else save_every)
    keep = int(tc.keep if keep is None else keep)
    seed = int(tc.seed if seed is None else seed)
    log_every = max(int(tc.log_every if log_every is None else log_every), 1)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    if mesh is None:
        mesh = Mesh(np.array(jax.local_devices()[:1]), ("data",))
    repl = NamedSharding(mesh, P())
    data_sharding = batch_sharding(mesh)

    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Checkpointer(checkpoint_dir, save_every=save_every, keep=keep)
    try:
        # The example batch (its shapes initialise the state) is the batch of the step the
        # run starts at: on resume, the newest complete checkpoint's.
        resume_at = (ckpt.latest_step() or 0) if ckpt is not None else 0
        batch_at, first = _batches(data, resume_at)
        if text_table is not None:
            text_table = jax.device_put(
                {k: np.asarray(text_table[k]) for k in ("text_emb", "text_mask")}, repl
            )
        example = _example(first, text_table)
        if init_state is None:
            abstract = _init_program(model, config, example).eval_shape(init_key)
        else:
            abstract = init_state
        shardings = state_shardings(abstract, mesh, param_specs)
        if ckpt is not None and ckpt.all_steps():
            # The newest complete step, restored shard by shard (a damaged newer step is
            # passed over with a warning; CheckpointError if none is complete).
            state = ckpt.restore(target=_abstract(abstract, shardings))
            log.info("resumed from %s at step %d", checkpoint_dir, ckpt.restored_step)
        elif init_state is None:
            state = _init_program(model, config, example, shardings)(init_key)
        else:
            if jax.process_count() > 1:
                init_state = jax.device_get(init_state)  # the same values on every process
            state = jax.device_put(init_state, shardings)
        body = _step_body(model, config, shardings.params)

        def loop_step(state, batch, key, text_table, guard):
            # The key of step i is fold_in(train_key, i), made on the device.
            key = jax.random.wrap_key_data(key)
            return body(state, batch, jax.random.fold_in(key, state.step), text_table, guard)

        step_fn = _jit_step(loop_step, True, mesh, shardings, guarded=True)
        key = jax.device_put(jax.random.key_data(train_key), repl)
        guard = jax.device_put(
            {
                "step": np.asarray(-1, np.int32),
                "loss": np.asarray(0.0, np.float32),
                "grad_norm": np.asarray(0.0, np.float32),
            },
            repl,
        )
        history: list[dict[str, float]] = []
        start = int(jax.device_get(state.step))
        for step in range(start, num_steps):
            batch = _global_batch(batch_at(step), data_sharding)
            state, metrics, guard = step_fn(state, batch, key, text_table, guard)
            done = step + 1
            save = ckpt is not None and (done % save_every == 0 or done == num_steps)
            logs = done % log_every == 0 or done == num_steps
            if not (save or logs):
                continue  # no device-to-host transfer: the next step is dispatched at once
            fetched = jax.device_get({"metrics": metrics, "guard": guard})
            g = fetched["guard"]
            if int(g["step"]) >= 0:
                raise NonFiniteLossError(int(g["step"]), float(g["loss"]), float(g["grad_norm"]))
            if save:
                ckpt.save(done, state, force=True)
            if logs:
                m = {k: float(v) for k, v in fetched["metrics"].items() if k != "finite"}
                m["step"] = done
                history.append(m)
                if callback is not None:
                    callback(done, m, state)
    finally:
        if ckpt is not None:
            ckpt.close()
    return state, history
