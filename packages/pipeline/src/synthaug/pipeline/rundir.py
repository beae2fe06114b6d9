"""A run directory belongs to one run: the fingerprint of the config that made it.

Every stage that writes a directory (``finetune`` and ``train-classifier``: ``workdir``;
``sample``: ``out_dir``; the demo: ``out``) first claims it with :func:`claim`: it writes
``run.json``, the stage and a SHA-256 fingerprint of the config keys that decide what the run
computes, before anything else. Reopening the directory with the same fingerprint resumes the
run; another fingerprint is refused (a :class:`RunMismatchError`, which names the keys that
differ) unless the config sets ``overwrite=True``, which removes the outputs of the old run
(the names the stage owns, nothing else) and starts afresh. A directory holding a stage's
outputs without a ``run.json`` is refused the same way.

Keys that only place or describe a run are not part of the fingerprint: paths of the run's
own outputs, ``overwrite``, ``hardware``, ``paper``, the device mesh and sharding rules (the
same seed gives the same result on any mesh), the prompt-cache path, checkpoint and log
cadences, and the lengths that extend a run without changing what it has already made
(``finetune``'s ``train.num_steps``; ``sample``'s ``per_class``: a larger set is a prefix
extension of a smaller one).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

from synthaug.pipeline.errors import ConfigError

__all__ = ["IGNORED", "OWNED", "RUN_FILE", "RunMismatchError", "claim", "fingerprint", "identity"]

RUN_FILE = "run.json"

_COMMON = (
    "overwrite",
    "hardware",
    "paper",
    "mesh",
    "sharding",
    "workdir",
    "out_dir",
    "out",
    "text.cache",
)

#: Per stage, the keys (dotted, or a group) left out of the fingerprint.
IGNORED: dict[str, tuple[str, ...]] = {
    "finetune": (*_COMMON, "train.save_every", "train.log_every", "train.keep", "train.num_steps"),
    "train-classifier": (
        *_COMMON,
        "recipe.checkpoint_every_steps",
        "recipe.checkpoint_max_to_keep",
        "recipe.log_every_steps",
        "recipe.eval_every_epochs",
        "recipe.eval_batch_size",
    ),
    "sample": (*_COMMON, "per_class"),
    "demo": (*_COMMON, "fast_compile"),
}

#: Per stage, the names (globs) of the outputs a run writes in its directory: what
#: ``overwrite=True`` removes.
OWNED: dict[str, tuple[str, ...]] = {
    "finetune": ("checkpoints", "model.json", "metrics.json", "tb", "text"),
    "train-classifier": ("checkpoints", "classifier.json", "metrics.json", "tb"),
    "sample": (
        "synthetic-*.tfrecord",
        "synthetic-*.tfrecord.json",
        ".synthetic-*",
        "writer.json",
        "manifest.json",
        "host-*-of-*",
        "metrics.json",
        "text",
    ),
    "demo": (
        "diffusion_base",
        "diffusion_sr",
        "synthetic",
        "classifiers",
        "sweep",
        "text_cache",
        "figures",
        "tb",
        "metrics.json",
        "report.md",
    ),
}


class RunMismatchError(ConfigError):
    """A directory holds the outputs of a run with another config."""


def _flatten(x: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in x.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _ignored(key: str, patterns: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in patterns)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and v != v:  # NaN: a stable spelling
        return "nan"
    return v


def identity(cfg, stage: str) -> dict[str, Any]:
    """The keys of ``cfg`` that decide what a run of ``stage`` computes, flattened."""
    plain = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    patterns = IGNORED.get(stage, _COMMON)
    if stage == "demo":
        nested = {"base": "finetune", "sr": "finetune", "sample": "sample"}
        nested["classifier"] = "train-classifier"
        flat = {}
        for key, value in _flatten(plain).items():
            top, _, rest = key.partition(".")
            if top in nested:
                if _ignored(rest, IGNORED[nested[top]]):
                    continue
            elif _ignored(key, patterns):
                continue
            flat[key] = _jsonable(value)
        return dict(sorted(flat.items()))
    flat = {k: _jsonable(v) for k, v in _flatten(plain).items() if not _ignored(k, patterns)}
    return dict(sorted(flat.items()))


def fingerprint(cfg, stage: str) -> str:
    """SHA-256 of :func:`identity` as canonical JSON."""
    text = json.dumps(identity(cfg, stage), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    keys = sorted(set(old) | set(new), key=lambda k: (k.count("."), k))  # top-level first
    diffs = [
        f"{k} {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
        for k in keys
        if old.get(k, "(absent)") != new.get(k, "(absent)")
    ]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def _owned_entries(path: pathlib.Path, stage: str) -> list[pathlib.Path]:
    found: list[pathlib.Path] = []
    for pattern in OWNED.get(stage, ()):
        found.extend(sorted(path.glob(pattern)))
    return found


def _remove(entries: Iterable[pathlib.Path]) -> None:
    for p in entries:  # tolerant of another process removing the same entries
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def claim(path: str | os.PathLike, cfg, stage: str, *, what: str = "workdir") -> pathlib.Path:
    """Claim ``path`` for a run of ``stage`` with config ``cfg`` (before anything is written).

    Args:
      path: the run's directory (created if missing).
      cfg: the validated stage config (its ``overwrite`` key, if any, allows replacing
        another run's outputs).
      stage: the stage name.
      what: what the directory is, for messages (``"workdir"``, ``"out_dir"``, ``"out"``).

    Returns:
      The directory.

    Raises:
      RunMismatchError: the directory holds another run's outputs and ``overwrite`` is off.
      ConfigError: ``path`` is not a directory; ``run.json`` is unreadable.
      OSError: the directory cannot be created or written.
    """
    from synthaug.pipeline.io import read_json, write_json

    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} exists and is not a directory")
    ident = identity(cfg, stage)
    fp = fingerprint(cfg, stage)
    overwrite = bool(cfg.get("overwrite", False)) if hasattr(cfg, "get") else False
    record = path / RUN_FILE
    hint = f"use another {what} or set overwrite=true (--config.overwrite) to replace it"
    if record.is_file():
        old = read_json(record, "run record")
        if not isinstance(old, dict) or "fingerprint" not in old:
            raise ConfigError(f"run record {str(record)!r} has no fingerprint; {hint}")
        if old["fingerprint"] == fp and old.get("stage") == stage:
            return path
        if not overwrite:
            if old.get("stage") != stage:
                why = f"a {old.get('stage')!r} run"
            else:
                why = "a run of another config (" + _differences(old.get("config", {}), ident) + ")"
            raise RunMismatchError(f"{what} {str(path)!r} holds {why}; {hint}")
        _remove(_owned_entries(path, stage))
    else:
        owned = _owned_entries(path, stage) if path.is_dir() else []
        if owned and not overwrite:
            names = ", ".join(p.name for p in owned[:3])
            raise RunMismatchError(
                f"{what} {str(path)!r} holds outputs of an unrecorded run ({names}; no "
                f"{RUN_FILE}); {hint}"
            )
        _remove(owned)
    path.mkdir(parents=True, exist_ok=True)
    write_json(record, {"stage": stage, "fingerprint": fp, "config": ident})
    return path
