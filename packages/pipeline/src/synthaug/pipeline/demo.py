"""``synthaug demo``: the paper's pipeline at toy scale on the embedded digits, on a CPU.

1. Embed the ten class names ("zero" ... "nine") with a tiny, randomly initialised, frozen
   T5 encoder (a SentencePiece tokenizer is trained on the prompts).
2. Train a tiny 16×16 text-conditioned base U-Net and a tiny 16→32 super-resolution U-Net on
   the digits train split (``finetune``).
3. Sample a class-balanced synthetic set with the base model (16×16, the classifiers'
   training set) and a smaller one through the whole cascade (32×32, for the figures and a
   CAS after SR), with the paper's sampler settings, scaled down in steps (``sample``).
4. Train a small classifier at 8×8, with ``seeds`` seeds each, on (a) a small real subset,
   (b) synthetic images only (the Classification Accuracy Score; (b′) after SR) and (c)
   both (every classifier through one compiled program, :class:`DemoClassifiers`); evaluate each on
   the held-out real test split; report mean ± sd and the paired difference (c) − (a) with
   its 95% t-interval. A classifier trained on the whole real train split gives the
   features for the Fréchet distance (not Inception FID: Inception features mean nothing on
   digits).
5. Sweep the data size (the real subset plus ``size_sweep`` multiples of its size in
   synthetic images) and the base model's guidance weight (CAS with error bars and the
   Fréchet distance per weight).
6. Write ``report.md`` with the paper's claims and whether this run reproduces them, the
   tables, a sample grid per class, the two sweep plots and the wall and CPU time of each
   stage, plus ``metrics.json`` and TensorBoard event files.

The stages are configured by the demo config's stage configs, the other files of
``configs/demo/`` (``base``/``sr``: finetune, ``sample``, ``classifier``: train-classifier);
the demo only places them: workdirs under ``config.out``, every seed from ``config.seed``,
every ``text`` section from ``config.text`` (its embedding cache inside ``config.out``).
Everything goes under ``config.out``; the report is written last (atomically), so its
presence means the demo finished.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

import ml_collections
import numpy as np

from synthaug.pipeline.config import validate
from synthaug.pipeline.report import MarkdownReport
from synthaug.pipeline.writer import MetricWriter, StageTimer

__all__ = ["DemoClassifiers", "feature_frechet_distance", "reproduce", "run_demo"]


def _finetune_cfg(cfg, which: str, out: pathlib.Path) -> ml_collections.ConfigDict:
    """The demo's ``base`` or ``sr`` finetune config, placed under ``out``."""
    c = cfg[which].to_dict()
    c["workdir"] = str(out / f"diffusion_{which}")
    c["text"] = cfg.text.to_dict()
    c["train"]["seed"] = int(cfg.seed)
    return validate(c, "finetune")


def _sample_cfg(cfg, out_dir: pathlib.Path, *, guidance: float, per_class: int, sr=True):
    """The demo's sample config writing to ``out_dir``, at base guidance ``guidance``;
    without ``sr``, the base stage alone (16×16 samples)."""
    c = cfg.sample.to_dict()
    c["sr1"]["enabled"] = bool(sr)
    c.update(seed=int(cfg.seed), out_dir=str(out_dir), per_class=per_class)
    c["text"] = cfg.text.to_dict()
    c["base"]["guidance"] = float(guidance)
    return validate(c, "sample")


def _repeat_to(images: np.ndarray, labels: np.ndarray, n: int, *, seed: int):
    """``n`` examples: whole seeded permutations of the set, one after another (cut at ``n``)."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(labels))
    idx = np.concatenate([rng.permutation(len(labels)) for _ in range(reps)])[:n]
    return images[idx], labels[idx]


# The classifiers' programs are compiled at XLA's default optimisation level even when the
# process compiles at level 0 (:data:`FAST_COMPILE_FLAGS`, which halve the diffusion
# models' compile time): at level 0 a classifier step runs about ten times slower.
CLASSIFIER_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}


class DemoClassifiers:
    """Trains and evaluates the demo's classifiers, every one through the same two compiled
    programs: ``total_steps`` optimizer steps of ``batch_size`` as one ``lax.scan`` (one
    dispatch per classifier), and the evaluation of the whole test split in one batch.

    Every training set is repeated to ``total_steps * batch_size`` examples (whole seeded
    permutations of it, one after another), so every classifier has the same shapes and
    schedule whatever its set's size, and seed ``s`` draws the initialisation
    (``fold_in``-free: ``jax.random.key(s)``, split as ``synthaug.classifiers.fit`` does)
    and the data order.
    """

    def __init__(self, recipe, test: tuple[np.ndarray, np.ndarray]):
        import jax

        from synthaug import classifiers as cl
        from synthaug.classifiers.state import variables_of

        r = ml_collections.ConfigDict(recipe.to_dict())
        r.train_examples = int(r.total_steps) * int(r.batch_size)
        r.epochs = 1
        self.recipe = r
        self.steps, self.batch = int(r.total_steps), int(r.batch_size)
        self.model = model = cl.model_from_config(r)
        step = cl.make_train_step(model, r, None, steps_per_epoch=self.steps)
        size = int(r.image_size)
        self.size = size
        self.test = (resize_images(test[0], size), np.asarray(test[1]))

        def train(state, images, labels):
            def body(st, batch):
                st, m = step(st, {"images": batch[0], "labels": batch[1]})
                return st, m["finite"]

            return jax.lax.scan(body, state, (images, labels))

        def logits(state, images):
            x = cl.prepare_images(images, r, train=False)
            return model.apply(variables_of(state), x, train=False)

        opts = CLASSIFIER_COMPILER_OPTIONS
        self._train = jax.jit(train, donate_argnums=0, compiler_options=opts)
        self._logits = jax.jit(logits, compiler_options=opts)
        self.trained = 0

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int):
        """The trained state of one classifier on ``(images, labels)`` with seed ``seed``."""
        import jax

        from synthaug import classifiers as cl
        from synthaug.classifiers.fit import NonFiniteLossError

        x, y = _repeat_to(
            resize_images(images, self.size),
            np.asarray(labels, np.int32),
            self.steps * self.batch,
            seed=int(seed),
        )
        k_init, _ = jax.random.split(jax.random.key(int(seed)))
        state = cl.create_train_state(self.model, self.recipe, k_init, steps_per_epoch=self.steps)
        shape = (self.steps, self.batch)
        state, finite = self._train(state, x.reshape(*shape, *x.shape[1:]), y.reshape(shape))
        finite = np.asarray(finite)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise NonFiniteLossError(bad, {"loss": np.nan, "grad_norm": np.nan, "lr": 0.0}, None)
        self.trained += 1
        return state

    def evaluate(self, state) -> dict[str, float]:
        """Top-1 and top-5 of ``state`` on the test split."""
        x, y = self.test
        lg = np.asarray(self._logits(state, x), np.float32)
        top5 = np.argsort(-lg, axis=-1)[:, :5]
        return {
            "top1": float(np.mean(lg.argmax(-1) == y)),
            "top5": float(np.mean((top5 == y[:, None]).any(-1))),
        }


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` images at ``size``×``size``: the mean of each ``k``×``k`` block
    when ``H`` and ``W`` are ``k`` times ``size`` (the SR outputs at the base resolution),
    else antialiased bilinear resampling; rounded back to uint8."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    if h % size == 0 and w % size == 0 and h // size == w // size:
        k = h // size
        x = images.reshape(n, size, k, size, k, c).astype(np.float64).mean(axis=(2, 4))
    else:
        import jax

        x = np.asarray(
            jax.image.resize(
                images.astype(np.float32), (n, size, size, c), "linear", antialias=True
            )
        )
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def balanced_prefix(labels: np.ndarray, per_class: float) -> np.ndarray:
    """Indices of the first ``per_class`` examples of every class, in order (nested: a smaller
    ``per_class`` selects a subset of a larger one). A fractional ``per_class`` takes
    ``floor`` per class plus one more from the first classes, so the total is
    ``round(per_class * classes)``."""
    classes = np.unique(labels)
    total = int(round(per_class * len(classes)))
    base, extra = divmod(total, len(classes))
    idx = []
    for i, k in enumerate(classes):
        want = base + (1 if i < extra else 0)
        members = np.flatnonzero(labels == k)
        if len(members) < want:
            raise ValueError(f"class {k} has {len(members)} examples, {want} requested")
        idx.append(members[:want])
    return np.sort(np.concatenate(idx))


def mean_std(values) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of ``values``."""
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def paired_interval(a, b, confidence: float = 0.95) -> dict[str, float]:
    """The mean paired difference ``b - a`` over seeds with its two-sided t-interval.

    ``a[i]`` and ``b[i]`` come from the same seed (same real subset, initialisation and data
    order). Returns ``mean``, ``std`` (of the differences), ``low``, ``high``, ``n`` and
    ``excludes_zero``; with one pair the interval is unbounded.
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"paired values must be two equal-length 1-D sequences, got shapes {a.shape} "
            f"and {b.shape}"
        )
    d = b - a
    n, mean = len(d), float(d.mean())
    if n < 2:
        low, high, std = -np.inf, np.inf, 0.0
    else:
        std = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / np.sqrt(n)
        low, high = mean - half, mean + half
    return {
        "mean": mean,
        "std": std,
        "low": float(low),
        "high": float(high),
        "n": n,
        "confidence": float(confidence),
        "excludes_zero": bool(low > 0 or high < 0),
    }


def _seeded_rows(trainer: DemoClassifiers, rows, *, seeds, bar=None, keep=None):
    """Train every row of ``rows`` (name -> seed -> (images, labels)) with each seed;
    returns name -> {top1: [...], top5: [...], train_examples, seeds}. ``keep`` collects
    the state of ``(name, seed)`` pairs it names."""
    res = {}
    for name, arrays_of in rows.items():
        top1, top5, n = [], [], None
        for s in seeds:
            x, y = arrays_of(s)
            state = trainer.fit(x, y, seed=s)
            r = trainer.evaluate(state)
            if keep is not None and (name, s) in keep:
                keep[(name, s)] = state
            top1.append(r["top1"])
            top5.append(r["top5"])
            n = len(y)
            if bar is not None:
                bar.update(1)
        res[name] = {
            "top1": top1,
            "top5": top5,
            "train_examples": int(n),
            "seeds": [int(s) for s in seeds],
            "top1_mean_std": mean_std(top1),
            "top5_mean_std": mean_std(top5),
        }
    return res


def feature_frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]``."""
    from synthaug import metrics

    def stats(f):
        f = np.asarray(f, np.float64)
        return f.mean(0), np.cov(f, rowvar=False)

    mu1, s1 = stats(feats_a)
    mu2, s2 = stats(feats_b)
    return float(metrics.frechet_distance(mu1, s1, mu2, s2))


def _grids(out: pathlib.Path, images: np.ndarray, labels: np.ndarray, names, per_row: int):
    from synthaug.pipeline.plots import save_grid_png

    paths = []
    for k, name in enumerate(names):
        sel = images[labels == k][: per_row * 2]
        if len(sel) == 0:
            continue
        paths.append(
            save_grid_png(out / "figures" / f"samples_{k}_{name}.png", sel, cols=per_row, scale=3)
        )
    return paths


# XLA CPU options that halve compile time (measured on the quick demo: 45 s of compilation
# down to 23 s) at some cost in run time: LLVM optimisation level 0 without its expensive
# passes, no fusion emitters, no XNNPACK, one code-generation module.
FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)


def _fast_compile() -> None:
    """The :data:`FAST_COMPILE_FLAGS`, if the JAX backend is not started yet and the user's
    ``XLA_FLAGS`` do not set the optimisation level."""
    flag = " ".join(FAST_COMPILE_FLAGS)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in flags:
        return
    import jax

    try:
        started = bool(jax._src.xla_bridge._backends)  # noqa: SLF001
    except AttributeError:
        started = True
    if not started:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def run_demo(cfg, *, progress: bool = True) -> dict[str, Any]:
    """Run the demo a validated ``demo`` config describes; returns the metrics summary."""

    from tqdm.auto import tqdm

    from synthaug import classifiers as cl
    from synthaug import imagenet_data as data
    from synthaug.pipeline.classify import read_synthetic_arrays
    from synthaug.pipeline.data import digits_subset
    from synthaug.pipeline.finetune import train_stage
    from synthaug.pipeline.plots import plot_vs_guidance, plot_vs_size, save_grid_png
    from synthaug.pipeline.sample import sample
    from synthaug.pipeline.text import class_embeddings

    t_start, c_start = time.perf_counter(), time.process_time()
    if cfg.fast_compile:
        _fast_compile()
    from synthaug.pipeline import rundir

    out = rundir.claim(cfg.out, cfg, "demo", what="out")
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    if not cfg.text.cache:
        cfg.text.cache = str(out / "text_cache")
    names = tuple(data.DIGITS_CLASS_NAMES)
    timer = StageTimer()
    writer = MetricWriter(out)

    with timer("text encoder"):
        emb, mask = class_embeddings(cfg.text, names, workdir=out)

    models = {}
    for which, key in (("base", "base"), ("sr", "sr1")):
        fcfg = _finetune_cfg(cfg, which, out)
        with timer(f"finetune {which}"):
            models[key] = train_stage(fcfg, progress=progress)[1]

    size = int(cfg.classifier.recipe.image_size)
    rpc = int(cfg.real_per_class)
    multiples = sorted(float(m) for m in cfg.size_sweep)
    if rpc <= 0 or not multiples or multiples[0] <= 0:
        raise ValueError("real_per_class and every size_sweep multiple must be positive")
    per_class = max(int(cfg.sample.per_class), int(np.ceil(rpc * multiples[-1])))

    def run_sample(scfg):
        sample(
            scfg,
            progress=progress,
            models=models,
            text=(emb, mask),
            process_index=0,
            process_count=1,
            traced_guidance=("base",),
        )
        return read_synthetic_arrays(scfg.out_dir)

    guidance = float(cfg.sample.base.guidance)
    # The classifiers' synthetic set: the base model's 16×16 samples (the cascade's first
    # stage); the SR stage's 32×32 samples of the same prompts are a smaller set, for the
    # figures and the CAS after SR.
    with timer("sample"):
        syn_x, syn_y = run_sample(
            _sample_cfg(cfg, out / "synthetic", guidance=guidance, per_class=per_class, sr=False)
        )
    n_sr = int(cfg.sweep.per_class)
    with timer("sample sr"):
        syn_hi, syn_hi_y = run_sample(
            _sample_cfg(cfg, out / "synthetic_sr", guidance=guidance, per_class=n_sr)
        )

    seeds = [int(cfg.seed) + i for i in range(int(cfg.seeds))]
    if not seeds:
        raise ValueError("seeds must be at least 1")

    # The digits at the base model's resolution; the classifiers resize every image to
    # theirs (mean of 2×2 blocks down to 8×8, where the 8×8 originals come back).
    base_size = int(syn_x.shape[1])

    def real_of(s):
        return digits_subset("train", base_size, rpc, seed=s)

    def with_synthetic(idx):
        def arrays(s):
            rx, ry = real_of(s)
            return np.concatenate([rx, syn_x[idx]]), np.concatenate([ry, syn_y[idx]])

        return arrays

    full_x, full_y = digits_subset("train", base_size)
    test = digits_subset("test", base_size)
    everything = np.arange(len(syn_y))
    rows = {
        "real": real_of,
        "synthetic": lambda s: (syn_x, syn_y),
        "mixed": with_synthetic(everything),
        "real_full": lambda s: (full_x, full_y),
        "synthetic_sr": lambda s: (syn_hi, syn_hi_y),
    }
    sweep_seeds = [int(cfg.seed) + i for i in range(int(cfg.sweep.seeds))]
    n_sweep = len(cfg.sweep.guidance) - (guidance in cfg.sweep.guidance)
    n_sizes = sum(1 for m in multiples if len(balanced_prefix(syn_y, rpc * m)) < len(syn_y))
    total = len(seeds) * (len(rows) + n_sizes) + len(sweep_seeds) * (n_sweep + 1)
    bar = tqdm(
        total=total, desc="classifiers", unit="clf", disable=not progress, dynamic_ncols=True
    )
    with timer("train classifiers"):
        trainer = DemoClassifiers(cfg.classifier.recipe, test)
        keep = {("real_full", seeds[0]): None}
        results = _seeded_rows(trainer, rows, seeds=seeds, bar=bar, keep=keep)
        reference = keep[("real_full", seeds[0])]
        cl.save_classifier(out / "classifiers" / "real_full", trainer.recipe, reference)
    mixed_gain = paired_interval(results["real"]["top1"], results["mixed"]["top1"])

    # The data-size sweep: the real subset plus m x its size in synthetic images.
    n_real = rpc * 10
    size_rows = {}
    with timer("data-size sweep"):
        for m in multiples:
            idx = balanced_prefix(syn_y, rpc * m)
            if len(idx) == len(syn_y):
                size_rows[m] = results["mixed"]
                continue
            name = f"synthetic_x{m:g}"
            size_rows[m] = _seeded_rows(trainer, {name: with_synthetic(idx)}, seeds=seeds, bar=bar)[
                name
            ]
    size_sweep = [
        {
            "multiple": 0.0,
            "synthetic_images": 0,
            "train_examples": results["real"]["train_examples"],
            "top1": results["real"]["top1"],
            "top1_mean_std": results["real"]["top1_mean_std"],
            "gain_vs_real": None,
        }
    ] + [
        {
            "multiple": m,
            "synthetic_images": r["train_examples"] - n_real,
            "train_examples": r["train_examples"],
            "top1": r["top1"],
            "top1_mean_std": r["top1_mean_std"],
            "gain_vs_real": paired_interval(results["real"]["top1"], r["top1"]),
        }
        for m, r in size_rows.items()
    ]

    # Fréchet distance in the features of the classifier trained on every real train image.
    recipe = trainer.recipe

    def features(x):
        return cl.predict_features(recipe, reference, resize_images(x, size))

    with timer("Fréchet distance"):
        feats_test = features(test[0])
        fd = {
            "synthetic (base 16×16) vs real test": feature_frechet_distance(
                features(syn_x), feats_test
            ),
            "synthetic (after SR) vs real test": feature_frechet_distance(
                features(syn_hi), feats_test
            ),
            "real train subset vs real test": feature_frechet_distance(
                features(real_of(seeds[0])[0]), feats_test
            ),
        }

    # The base model's guidance sweep, at the base resolution.
    sweep_rows = []
    with timer("guidance sweep"):
        for w in cfg.sweep.guidance:
            if w == guidance:
                # This point of the sweep is a class-balanced part of the main synthetic set.
                sel = balanced_prefix(syn_y, int(cfg.sweep.per_class))
                x, y = syn_x[sel], syn_y[sel]
            else:
                d = out / "sweep" / f"guidance_{w:g}" / "synthetic"
                x, y = run_sample(
                    _sample_cfg(cfg, d, guidance=w, per_class=cfg.sweep.per_class, sr=False)
                )
            cas = _seeded_rows(
                trainer, {"cas": lambda s, x=x, y=y: (x, y)}, seeds=sweep_seeds, bar=bar
            )["cas"]
            sweep_rows.append(
                {
                    "guidance": float(w),
                    "cas_top1": cas["top1"],
                    "cas_top1_mean_std": cas["top1_mean_std"],
                    "frechet_distance": feature_frechet_distance(features(x), feats_test),
                    "images": int(len(y)),
                }
            )
    bar.close()

    with timer("figures and report"):
        grids = _grids(out, syn_hi, syn_hi_y, names, per_row=8)
        overview = save_grid_png(
            out / "figures" / "samples_all_classes.png",
            np.concatenate([syn_hi[syn_hi_y == k][:8] for k in range(10)]),
            cols=8,
            scale=3,
        )
        overview_base = save_grid_png(
            out / "figures" / "samples_base_all_classes.png",
            np.concatenate([syn_x[syn_y == k][:8] for k in range(10)]),
            cols=8,
            scale=6,
        )
        real_hi, real_hi_y = digits_subset("train", int(syn_hi.shape[1]))
        real_grid = save_grid_png(
            out / "figures" / "real_all_classes.png",
            np.concatenate([real_hi[real_hi_y == k][:8] for k in range(10)]),
            cols=8,
            scale=3,
        )
        plot = plot_vs_guidance(
            out / "figures" / "guidance_sweep.png",
            [r["guidance"] for r in sweep_rows],
            {
                "CAS top-1 (real test split)": [
                    (100 * r["cas_top1_mean_std"]["mean"], 100 * r["cas_top1_mean_std"]["std"])
                    for r in sweep_rows
                ],
                "Fréchet distance (classifier features)": [
                    (r["frechet_distance"], 0.0) for r in sweep_rows
                ],
            },
            title=f"Base guidance weight: CAS (mean ± sd, {len(sweep_seeds)} seeds), Fréchet distance",
        )
        size_plot = plot_vs_size(
            out / "figures" / "data_size_sweep.png",
            [r["train_examples"] for r in size_sweep],
            [100 * r["top1_mean_std"]["mean"] for r in size_sweep],
            [100 * r["top1_mean_std"]["std"] for r in size_sweep],
            reference=100 * results["real_full"]["top1_mean_std"]["mean"],
            title=f"{n_real} real images + synthetic (mean ± sd, {len(seeds)} seeds)",
        )
    times = dict(timer.times)
    times["total"] = time.perf_counter() - t_start
    timer.cpu_times["total"] = time.process_time() - c_start
    summary = {
        "accuracy": {
            k: {
                "top1": v["top1_mean_std"]["mean"],
                "top1_std": v["top1_mean_std"]["std"],
                "top5": v["top5_mean_std"]["mean"],
                "top5_std": v["top5_mean_std"]["std"],
                "top1_per_seed": v["top1"],
                "top5_per_seed": v["top5"],
                "train_examples": v["train_examples"],
            }
            for k, v in results.items()
        },
        "seeds": seeds,
        "mixed_minus_real_top1": mixed_gain,
        "cas_top1": results["synthetic"]["top1_mean_std"]["mean"],
        "frechet_distance_classifier_features": fd,
        "size_sweep": size_sweep,
        "guidance_sweep": sweep_rows,
        "synthetic": {
            "num_examples": int(len(syn_y)),
            "per_class": np.bincount(syn_y, minlength=10).tolist(),
            "image_size": list(syn_x.shape[1:3]),
            "classifier_image_size": [size, size],
        },
        "synthetic_sr": {
            "num_examples": int(len(syn_hi_y)),
            "per_class": np.bincount(syn_hi_y, minlength=10).tolist(),
            "image_size": list(syn_hi.shape[1:3]),
        },
        "wall_time_s": times,
        "cpu_time_s": dict(timer.cpu_times),
        "config": cfg.to_dict(),
    }
    for k, v in summary["accuracy"].items():
        writer.scalars(0, {f"demo/top1_{k}": v["top1"], f"demo/top1_std_{k}": v["top1_std"]})
    for i, r in enumerate(sweep_rows):
        writer.scalars(
            i,
            {
                "sweep/guidance": r["guidance"],
                "sweep/cas_top1": r["cas_top1_mean_std"]["mean"],
                "sweep/frechet_distance": r["frechet_distance"],
            },
        )
    for i, r in enumerate(size_sweep):
        writer.scalars(i, {"size_sweep/top1": r["top1_mean_std"]["mean"]})
    writer.summary(demo=summary)
    writer.close()
    _write_report(
        out,
        cfg,
        summary,
        grids=grids,
        overview=overview,
        overview_base=overview_base,
        real_grid=real_grid,
        plot=plot,
        size_plot=size_plot,
    )
    return summary


def reproduce(out, *, rows=("real", "mixed"), resample: bool = True) -> dict[str, Any]:
    """Repeat part of a finished demo run from its outputs, to check that the same seed
    gives the same numbers on the same machine.

    Re-samples the base synthetic set from the saved base checkpoint (``resample``) and
    re-trains the classifier rows ``rows`` (``"real"``, ``"mixed"``, ``"synthetic"``) with
    every seed of the run, under the run's config (and its XLA options). Call it in a fresh
    process: the XLA options take effect only before JAX starts.

    Returns:
      ``{"synthetic_identical": bool or None, "top1": {row: [per seed]}}``, to compare with
      ``metrics.json``'s ``accuracy[row]["top1_per_seed"]``.
    """
    import json
    import tempfile

    out = pathlib.Path(out)
    summary = json.loads((out / "metrics.json").read_text())["demo"]
    cfg = ml_collections.ConfigDict(summary["config"])
    if cfg.fast_compile:
        _fast_compile()
    from synthaug.pipeline.classify import read_synthetic_arrays
    from synthaug.pipeline.data import digits_subset
    from synthaug.pipeline.models import load_stage_model
    from synthaug.pipeline.sample import sample
    from synthaug.pipeline.text import class_embeddings

    syn_x, syn_y = read_synthetic_arrays(out / "synthetic")
    identical = None
    if resample:
        from synthaug import imagenet_data as data

        with tempfile.TemporaryDirectory() as tmp:
            emb, mask = class_embeddings(cfg.text, tuple(data.DIGITS_CLASS_NAMES), workdir=tmp)
            base = load_stage_model(
                out / "diffusion_base", cfg.sample.base.preset, text_dim=emb.shape[-1]
            )
            per_class = int(summary["synthetic"]["per_class"][0])
            scfg = _sample_cfg(
                cfg,
                pathlib.Path(tmp) / "synthetic",
                guidance=cfg.sample.base.guidance,
                per_class=per_class,
                sr=False,
            )
            sample(
                scfg,
                progress=False,
                models={"base": base},
                text=(emb, mask),
                process_index=0,
                process_count=1,
                traced_guidance=("base",),
            )
            x, y = read_synthetic_arrays(scfg.out_dir)
        identical = bool(np.array_equal(x, syn_x) and np.array_equal(y, syn_y))
    base_size = int(syn_x.shape[1])
    trainer = DemoClassifiers(cfg.classifier.recipe, digits_subset("test", base_size))
    rpc = int(cfg.real_per_class)
    top1 = {}
    for row in rows:
        vals = []
        for s in summary["seeds"]:
            parts = []
            if row in ("real", "mixed"):
                parts.append(digits_subset("train", base_size, rpc, seed=s))
            if row in ("synthetic", "mixed"):
                parts.append((syn_x, syn_y))
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            vals.append(trainer.evaluate(trainer.fit(x, y, seed=s))["top1"])
        top1[row] = vals
    return {"synthetic_identical": identical, "top1": top1}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pm(ms: dict[str, float]) -> str:
    """``mean ± sd`` in percent."""
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}%"


def _ci(d: dict[str, float]) -> str:
    """A paired difference in points with its interval."""
    return (
        f"{100 * d['mean']:+.1f} points "
        f"({100 * d['confidence']:.0f}% CI {100 * d['low']:+.1f} to {100 * d['high']:+.1f})"
    )


def claims(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The paper's claims and whether this run reproduces them, from a demo summary:
    ``(claim, verdict, evidence)``. A claim is reproduced only when its interval excludes
    zero in the paper's direction."""
    acc = s["accuracy"]
    gain = s["mixed_minus_real_top1"]
    out = []
    if gain["excludes_zero"] and gain["mean"] > 0:
        verdict = "reproduced"
    elif gain["excludes_zero"]:
        verdict = "not reproduced (synthetic data hurts here)"
    else:
        verdict = "not shown (the interval includes zero)"
    out.append(
        (
            "Adding synthetic images to the real training data improves accuracy "
            "(ImageNet ResNet-50: 76.39 → 78.17 top-1)",
            verdict,
            f"real + synthetic − real subset: {_ci(gain)}, {gain['n']} paired seeds",
        )
    )
    sweep = s["size_sweep"]
    gains = [r["gain_vs_real"] for r in sweep if r["gain_vs_real"] is not None]
    means = [100 * r["top1_mean_std"]["mean"] for r in sweep]
    rising = len(gains) >= 2 and gains[-1]["mean"] > gains[0]["mean"]
    pos = sum(1 for g in gains if g["excludes_zero"] and g["mean"] > 0)
    out.append(
        (
            "More synthetic data helps, up to a point (the paper's data-size sweep)",
            (
                f"{'partly ' if pos < len(gains) else ''}reproduced"
                if pos and rising
                else "not shown"
            ),
            "top-1 by size: "
            + ", ".join(f"{m:.1f}%" for m in means)
            + f"; {pos} of {len(gains)} sizes gain with an interval above zero",
        )
    )
    cas = acc["synthetic"]
    chance = 0.1
    out.append(
        (
            "A classifier trained on synthetic data alone is well above chance but below one "
            "trained on as much real data (CAS 64.96 vs 76.39 real, 256×256)",
            "reproduced"
            if cas["top1"] - 2 * cas["top1_std"] > chance and cas["top1"] < acc["real_full"]["top1"]
            else "not reproduced",
            f"CAS {_pm({'mean': cas['top1'], 'std': cas['top1_std']})} (chance 10%), all real "
            f"train images {_pm({'mean': acc['real_full']['top1'], 'std': acc['real_full']['top1_std']})}",
        )
    )
    gs = s["guidance_sweep"]
    if len(gs) >= 2:
        best = max(gs, key=lambda r: r["cas_top1_mean_std"]["mean"])
        lo = min(gs, key=lambda r: r["guidance"])
        sep = (
            best["cas_top1_mean_std"]["mean"] - best["cas_top1_mean_std"]["std"]
            > lo["cas_top1_mean_std"]["mean"] + lo["cas_top1_mean_std"]["std"]
        )
        out.append(
            (
                "Guidance trades diversity for fidelity: the best CAS is at a low guidance "
                "weight above 1 (the paper: w = 1.25 at 64×64)",
                "reproduced"
                if sep and 1.0 < best["guidance"] <= 2.0
                else "not shown (the sweep's best point is not separated from w = 1 by more "
                "than its spread, or lies elsewhere)",
                "CAS by w: "
                + ", ".join(
                    f"{r['guidance']:g}: {100 * r['cas_top1_mean_std']['mean']:.1f}%" for r in gs
                ),
            )
        )
    out.append(
        (
            "Fine-tuned Imagen at 1024×1024 / 256×256 on ImageNet, FID and Inception Score",
            "not reproduced (out of scope)",
            "a tiny 16×16 cascade on 8×8 digits; the Fréchet distance is in a digit "
            "classifier's features, not Inception FID",
        )
    )
    return out


def _write_report(
    out, cfg, s, *, grids, overview, overview_base, real_grid, plot, size_plot
) -> pathlib.Path:
    acc = s["accuracy"]
    n_seeds = len(s["seeds"])
    rep = MarkdownReport(
        out / "report.md", "synthaug demo: synthetic digits from a diffusion cascade"
    )
    size = s["synthetic"]["classifier_image_size"][0]
    rep.paragraph(
        "The paper's pipeline at toy scale on the embedded 8×8 digits (upsampled to 16×16 and "
        "32×32; 1,437 train / 360 test images). A tiny 16×16 text-conditioned U-Net and a tiny "
        "16→32 super-resolution U-Net were trained on the train split, prompted with the class "
        "names through a tiny, randomly initialised, frozen T5 encoder; a class-balanced "
        f"synthetic set of {s['synthetic']['num_examples']} images was sampled with the base "
        "model (and a smaller one through the SR stage); small classifiers were trained on {size}×{size} images and evaluated on the "
        f"held-out real test split, each with {n_seeds} seeds. The diffusion models train on "
        "the whole real train split; the real subset (a) is a small part of it "
        f"({cfg.real_per_class} images per class): synthetic data can help only where the "
        "generator learnt beyond the subset."
    )
    rep.heading("What the toy reproduces")
    rep.table(["the paper's claim", "this run", "evidence"], [list(c) for c in claims(s)])
    rep.heading("Accuracy on the real test split")
    labels = {
        "real": "real subset (a)",
        "synthetic": "synthetic only (b) = CAS (base 16×16 samples)",
        "synthetic_sr": "synthetic after SR only (b′) (32×32 samples, fewer)",
        "mixed": "real subset + synthetic (c)",
        "real_full": "all real train images (reference)",
    }
    rep.table(
        ["training data", "images", f"top-1 (mean ± sd, {n_seeds} seeds)", "top-5"],
        [
            [
                label,
                acc[k]["train_examples"],
                _pm({"mean": acc[k]["top1"], "std": acc[k]["top1_std"]}),
                _pm({"mean": acc[k]["top5"], "std": acc[k]["top5_std"]}),
            ]
            for k, label in labels.items()
        ],
    )
    gain = s["mixed_minus_real_top1"]
    rep.paragraph(
        f"**(c) − (a), paired over seeds: {_ci(gain)}** (t-interval over {gain['n']} seeds; "
        "seed i draws the real subset, the initialisation and the data order of both (a) and "
        f"(c)). Seeds {s['seeds'][0]}–{s['seeds'][-1]}; per-seed values are in metrics.json. "
        f"The real subset has {cfg.real_per_class} images per class. Classifier: "
        f"`{cfg.classifier.recipe.model}` at {size}×{size} (every image resized to it: the "
        f"digits are 8×8 originals), {cfg.classifier.recipe.total_steps} SGD steps of "
        f"batch {cfg.classifier.recipe.batch_size} for every row (small sets are passed over "
        "more often). The paper's numbers "
        "(ImageNet, ResNet-50): real 76.39 → real + generated 78.17 top-1; CAS 64.96 (256×256)."
    )
    rep.heading("Data-size sweep")
    rep.paragraph(
        "The real subset plus a multiple of its size in synthetic images (class-balanced, "
        "nested sets from the main synthetic set), every classifier at the same number of "
        "steps; gain = paired difference to the real subset alone."
    )
    rep.table(
        ["synthetic / real", "synthetic images", f"top-1 (mean ± sd, {n_seeds} seeds)", "gain"],
        [
            [
                f"{r['multiple']:g}x",
                r["synthetic_images"],
                _pm(r["top1_mean_std"]),
                "–" if r["gain_vs_real"] is None else _ci(r["gain_vs_real"]),
            ]
            for r in s["size_sweep"]
        ],
    )
    rep.figure(size_plot, "Top-1 against training-set size (error bars: ± one standard deviation)")
    rep.heading("Fréchet distance in classifier features")
    rep.paragraph(
        "**This is not Inception FID.** Features are the penultimate layer of the classifier "
        "trained on all real train digits (the reference row above); a Gaussian is fitted to "
        "each set and the Fréchet distance between them is reported (lower is closer)."
    )
    rep.table(
        ["sets compared", "Fréchet distance (classifier features)"],
        [[k, v] for k, v in s["frechet_distance_classifier_features"].items()],
    )
    rep.heading("Guidance sweep (base model)")
    rep.paragraph(
        "Each point: a class-balanced synthetic set at that base guidance weight (SR stage at "
        "its final settings); CAS = top-1 on the real test split of a classifier trained on it "
        f"alone (mean ± sd over {cfg.sweep.seeds} seeds); Fréchet "
        "distance in classifier features to the real test split."
    )
    rep.table(
        ["guidance w", "images", "CAS top-1", "Fréchet distance"],
        [
            [r["guidance"], r["images"], _pm(r["cas_top1_mean_std"]), r["frechet_distance"]]
            for r in s["guidance_sweep"]
        ],
    )
    rep.figure(plot, "CAS and Fréchet distance (classifier features) against guidance weight")
    rep.heading("Samples")
    rep.figure(
        overview_base,
        "Synthetic 16×16 base samples (the classifiers' synthetic set), one row per class",
    )
    rep.figure(overview, "Synthetic 32×32 samples after SR, one row per class (zero … nine)")
    rep.figure(real_grid, "Real 32×32 train images, one row per class, for comparison")
    for g in grids:
        rep.figure(g, f"Synthetic samples of class '{g.stem.split('_', 2)[-1]}'")
    rep.heading("Sampler settings")
    names = {"ddpm": "DDPM ancestral", "ddim": "DDIM"}
    rep.table(
        ["stage", "guidance w", "log-variance mix", "sampler", "steps"],
        [
            [label, st.guidance, st.log_var_mix, names[st.sampler], st.steps]
            for label, st in (("base 16×16", cfg.sample.base), ("SR 16→32", cfg.sample.sr1))
        ],
    )
    rep.paragraph(
        "The paper's settings (base w 1.25, v 0.0; SR w 1.0, v 0.1; 1000 DDPM steps "
        "each), with fewer steps for the CPU."
    )
    rep.heading("Wall time per stage")
    cpu = s["cpu_time_s"]
    rep.table(
        ["stage", "wall seconds", "CPU seconds (all threads)"],
        [
            [k, round(v, 1), round(cpu[k], 1) if k in cpu else None]
            for k, v in s["wall_time_s"].items()
        ],
    )
    rep.paragraph(f"Host: {os.cpu_count()} CPU cores; JAX {__import__('jax').__version__}.")
    return rep.write()
