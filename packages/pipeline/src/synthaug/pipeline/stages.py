"""The stages behind the ``synthaug`` subcommands, and the ``report`` stage."""

from __future__ import annotations

import inspect
import pathlib
from typing import Any

from synthaug.pipeline.errors import ConfigError

__all__ = ["report", "run_stage"]


def report(cfg) -> pathlib.Path:
    """A Markdown report of finished stages: one table of each workdir's ``metrics.json``."""
    from synthaug.pipeline.report import MarkdownReport
    from synthaug.pipeline.writer import read_metrics

    if not cfg.inputs:
        raise ConfigError("report needs inputs: workdirs of finished stages")
    summaries = {str(d): read_metrics(d) for d in cfg.inputs}  # raises before writing
    for where, data in summaries.items():  # a malformed summary is named before writing
        scalars = data.get("scalars", {})
        ok = isinstance(scalars, dict) and all(
            isinstance(v, dict) and {"step", "value"} <= set(v) for v in scalars.values()
        )
        if not ok:
            path = pathlib.Path(where) / "metrics.json"
            raise ConfigError(
                f"metrics summary {str(path)!r} has a malformed 'scalars' entry; expected "
                "{name: {step, value}}"
            )
    rep = MarkdownReport(cfg.out, cfg.title)
    for where, data in summaries.items():
        rep.heading(where)
        for stage, values in data.items():
            if stage == "scalars":
                rows = [[k, v["step"], v["value"]] for k, v in sorted(values.items())]
                rep.table(["scalar", "step", "last value"], rows)
            elif isinstance(values, dict):
                flat = {k: v for k, v in values.items() if not isinstance(v, dict | list)}
                rep.heading(stage, level=3)
                rep.kv_table(flat, header=("key", "value"))
                paper = values.get("paper")
                if isinstance(paper, dict) and paper:
                    rep.paragraph("Paper: " + ", ".join(f"{k} {v}" for k, v in paper.items()))
    return rep.write()


def _with_mesh(fn, cfg, check=None) -> Any:
    """``fn(cfg, mesh=...)``: the run is joined and the mesh built here, once per stage,
    after ``check(cfg)`` has checked the stage's inputs (a missing path is reported as
    such, not as a mesh that does not fit this machine)."""
    from synthaug.pipeline.runtime import stage_runtime

    if check is not None:
        check(cfg)
    mesh = stage_runtime(cfg)
    if "mesh" in inspect.signature(fn).parameters:
        return fn(cfg, mesh=mesh)
    return fn(cfg)


def run_stage(stage: str, cfg) -> Any:
    """Run the stage ``stage`` on a validated config.

    ``finetune``, ``sample``, ``train-classifier``, ``evaluate``, ``fid-stats`` and
    ``select-checkpoint`` first join the multi-process run if there is one and build their
    mesh from ``cfg.mesh`` (`synthaug.pipeline.runtime.stage_runtime`), which they receive
    as ``mesh=``.
    """
    if stage == "finetune":
        from synthaug.pipeline.finetune import check_finetune, finetune

        return _with_mesh(finetune, cfg, check_finetune)
    if stage == "sample":
        from synthaug.pipeline.sample import check_sample, sample

        return _with_mesh(sample, cfg, check_sample)
    if stage == "train-classifier":
        from synthaug.pipeline.classify import check_classifier, train_classifier

        return _with_mesh(train_classifier, cfg, check_classifier)
    if stage == "evaluate":
        from synthaug.pipeline.evaluate import check_evaluate, evaluate

        return _with_mesh(evaluate, cfg, check_evaluate)
    if stage == "fid-stats":
        from synthaug.pipeline.fid_stats import check_fid_stats, fid_stats

        # joined, so that each process of a multi-process run counts its own share
        return _with_mesh(fid_stats, cfg, check_fid_stats)
    if stage == "select-checkpoint":
        from synthaug.pipeline.select_checkpoint import check_select_checkpoint, select_checkpoint

        return _with_mesh(select_checkpoint, cfg, check_select_checkpoint)
    if stage == "report":
        return report(cfg)
    if stage == "demo":
        from synthaug.pipeline.demo import run_demo

        return run_demo(cfg)
    raise ConfigError(f"unknown stage {stage!r}")
