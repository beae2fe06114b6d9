"""Loading, overriding and validating stage configs.

A config is a Python file with ``get_config(variant=None)`` returning an
``ml_collections.ConfigDict`` (big_vision style). It is named either by path,
``path/to/file.py[:variant]``, or by its name under this package's ``configs/`` directory,
``paper/resnet50[:variant]`` or ``demo/default:quick``. Command-line overrides have the
syntax of ``ml_collections.config_flags``: ``--config.train.num_steps=10`` (or
``--config.train.num_steps 10``; a bool key alone, ``--config.overwrite``, sets it true).
The value is parsed as the type the key already has: strings verbatim, bools from
true/false/1/0/yes/no, numbers and tuples as Python literals (a tuple also as a
comma-separated list). They are applied on top of the file, then the result is validated
against the stage's schema (:mod:`synthaug.pipeline.schemas`).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from synthaug.pipeline.errors import ConfigError, MissingPathError
from synthaug.pipeline.schemas import OPEN_KEYS, get_schema, schema_for

__all__ = [
    "CONFIGS_DIR",
    "FIXED_KEYS",
    "apply_overrides",
    "flatten",
    "list_configs",
    "load_config",
    "load_config_file",
    "parse_override",
    "resolve_config_path",
    "validate",
]

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent / "configs"

#: Keys a command-line override may not change: they name the package config that the
#: config file built its sections from (changing the name would not change the sections).
FIXED_KEYS = {
    "finetune": ("stage", "preset"),
    "demo": ("stage", "base.stage", "base.preset", "sr.stage", "sr.preset"),
}


def list_configs(group: str | None = None) -> list[str]:
    """Names of the configs shipped with the package, e.g. ``["paper/base64_finetune", ...]``."""
    root = CONFIGS_DIR if group is None else CONFIGS_DIR / group
    out = []
    for f in sorted(root.rglob("*.py")):
        if f.name.startswith("_"):
            continue
        out.append(f.relative_to(CONFIGS_DIR).with_suffix("").as_posix())
    return out


def resolve_config_path(spec: str) -> tuple[pathlib.Path, str | None]:
    """Split ``file[:variant]`` and find the file (a path, or a name under ``configs/``)."""
    if not spec:
        raise ConfigError("empty --config; expected path/to/config.py[:variant] or a config name")
    name, _, variant = spec.partition(":")
    variant = variant or None
    path = pathlib.Path(name)
    candidates = [path] if path.suffix == ".py" else []
    candidates.append(CONFIGS_DIR / (name if name.endswith(".py") else name + ".py"))
    for c in candidates:
        if c.is_file():
            return c, variant
    raise MissingPathError(
        f"config not found: {name!r} is neither a file nor one of {', '.join(list_configs())}"
    )


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Import a config file and call its ``get_config`` (with the variant, if one is given)."""
    path, variant = resolve_config_path(spec)
    mod_name = "synthaug_config_" + "_".join(path.with_suffix("").parts[-3:]).replace("-", "_")
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec_)
    try:
        spec_.loader.exec_module(module)
    except Exception as e:  # a broken config file is a config error
        raise ConfigError(f"config {str(path)!r} failed to load: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config {str(path)!r} has no get_config() function")
    takes_arg = bool(inspect.signature(module.get_config).parameters)
    if variant is not None and not takes_arg:
        raise ConfigError(f"config {str(path)!r} has no variants, got {variant!r}")
    try:
        cfg = module.get_config(variant) if takes_arg else module.get_config()
    except (KeyError, ValueError, AttributeError, TypeError) as e:
        # A locked package section raises AttributeError/KeyError for a misspelt key.
        msg = e.args[0] if e.args else e
        raise ConfigError(f"config {str(path)!r}: {type(e).__name__}: {msg}") from e
    if not isinstance(cfg, ml_collections.ConfigDict | Mapping):
        raise ConfigError(f"config {str(path)!r}: get_config() returned {type(cfg).__name__}")
    return ml_collections.ConfigDict(cfg)


def _type_name(x: Any) -> str:
    return type(x).__name__


def _coerce(key: str, default: Any, value: Any) -> Any:
    """``value`` converted to the type of the schema's ``default``, or a ConfigError."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, tuple | list):
        if isinstance(value, tuple | list):
            return tuple(value)
    elif default is None:
        return value
    raise ConfigError(
        f"config key {key!r} expects {_type_name(default)}, got {_type_name(value)} {value!r}"
    )


def _is_open(path: str) -> bool:
    return any(path == k or path.endswith("." + k) for k in OPEN_KEYS)


def _plain(config: Any) -> Any:
    return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config


def validate(
    config: Mapping[str, Any] | ml_collections.ConfigDict, stage: str | None = None
) -> ml_collections.ConfigDict:
    """Merge ``config`` into the schema of its stage, checking keys, types and values.

    Args:
      config: a config (a ConfigDict or a plain nested dict). Its ``stage`` key picks the
        schema unless ``stage`` is given.
      stage: the expected stage; a config for another stage is an error.

    Returns:
      A new, locked ConfigDict: the schema's defaults (the packages' own) updated with
      ``config``.

    Raises:
      ConfigError: an unknown key, a wrong type, a bad mesh or sharding rule, or a config
        for another stage.
    """
    cfg = dict(_plain(config))
    own = cfg.get("stage")
    if stage is None:
        if own is None:
            raise ConfigError("config has no 'stage' key; cannot pick its schema")
        stage = own
    elif own is not None and own != stage:
        raise ConfigError(f"config is for stage {own!r}, not {stage!r}")
    schema = schema_for(stage, cfg)
    with schema.unlocked():
        _merge(schema, cfg, prefix="")
    _check(schema, stage)
    schema.lock()
    return schema


def _merge(schema: ml_collections.ConfigDict, cfg: Mapping[str, Any], prefix: str) -> None:
    for key, value in cfg.items():
        full = prefix + key
        if key not in schema:
            known = ", ".join(sorted(prefix + k for k in schema.keys()))
            raise ConfigError(f"unknown config key {full!r} (known at this level: {known})")
        default = schema[key]
        if isinstance(default, ml_collections.ConfigDict):
            value = _plain(value)
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {full!r} expects a group of keys, got {value!r}")
            if _is_open(full):  # free keyword arguments: taken as they are
                schema[key] = ml_collections.ConfigDict(dict(value))
            else:
                with default.unlocked():
                    _merge(default, value, prefix=full + ".")
        else:
            schema[key] = _coerce(full, default, value)


def _check(cfg: ml_collections.ConfigDict, stage: str, prefix: str = "") -> None:
    """Checks of values the types alone do not catch."""
    if stage == "demo":
        for key, want in (
            ("base", "finetune"),
            ("sr", "finetune"),
            ("sample", "sample"),
            ("classifier", "train-classifier"),
        ):
            if cfg[key].stage != want:
                raise ConfigError(
                    f"config key '{key}' must be a {want} config, got {cfg[key].stage!r}"
                )
            _check(cfg[key], want, prefix=f"{key}.")
        return
    if "mesh" in cfg:
        _check_mesh(cfg.mesh, prefix + "mesh")
        _check_rules(cfg.sharding.rules, set(cfg.mesh.keys()), prefix + "sharding.rules")


def _check_mesh(mesh: ml_collections.ConfigDict, where: str) -> None:
    rest = [k for k, v in mesh.items() if v == -1]
    for k, v in mesh.items():
        if v == 0 or v < -1:
            raise ConfigError(f"{where}.{k} must be a positive axis size or -1 (the rest), got {v}")
    if len(rest) > 1:
        raise ConfigError(f"{where}: at most one axis may be -1 (the rest), got {rest}")


def _check_rules(rules: Any, axes: set[str], where: str) -> None:
    """``rules``: ``(regex, spec)`` pairs; a spec entry is None, an axis or a tuple of axes."""
    for i, rule in enumerate(rules):
        if not isinstance(rule, tuple | list) or len(rule) != 2:
            raise ConfigError(f"{where}[{i}] must be a (regex, partition spec) pair, got {rule!r}")
        regex, spec = rule
        if not isinstance(regex, str):
            raise ConfigError(f"{where}[{i}] regex must be a string, got {regex!r}")
        try:
            re.compile(regex)
        except re.error as e:
            raise ConfigError(f"{where}[{i}] regex {regex!r} does not compile: {e}") from None
        if not isinstance(spec, tuple | list):
            raise ConfigError(
                f"{where}[{i}] partition spec must be a tuple of mesh axes / None, got {spec!r}"
            )
        for entry in spec:
            names = entry if isinstance(entry, tuple | list) else (entry,)
            for name in names:
                if name is not None and name not in axes:
                    raise ConfigError(
                        f"{where}[{i}] names mesh axis {name!r}; the mesh has {', '.join(sorted(axes))}"
                    )


def flatten(config: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict:
    """``{"train.num_steps": 300, ...}``: every leaf key of a config with its value."""
    out = {}
    for key, value in _plain(config).items():
        if isinstance(value, Mapping) and not _is_open(prefix + key):
            out.update(flatten(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


def parse_override(text: str) -> tuple[str, str | None]:
    """Split ``key=value`` (the part after ``--config.``) into key and raw value.

    A bare ``key`` (``--config.key`` without a value) gives ``(key, None)``: allowed for a
    bool key only, which it sets true.
    """
    key, sep, raw = text.partition("=")
    if not key or key.startswith(".") or key.endswith(".") or ".." in key:
        raise ConfigError(f"bad override --config.{text}; expected --config.key=value")
    return key, (raw if sep else None)


def _parse_value(key: str, default: Any, raw: str | None) -> Any:
    if raw is None:
        if isinstance(default, bool):
            return True
        raise ConfigError(
            f"override --config.{key} has no value; expected --config.{key}=VALUE "
            f"({_type_name(default)})"
        )
    if isinstance(default, str):
        return raw
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"config key {key!r} expects a bool, got {raw!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        if isinstance(default, float):
            try:  # nan, inf: parsed, then refused by the stage's checks with a reason
                value = float(raw)
            except ValueError:
                raise ConfigError(f"config key {key!r} expects float, got {raw!r}") from None
        elif isinstance(default, tuple | list):  # a comma-separated list of strings
            value = tuple(s.strip() for s in raw.split(",") if s.strip())
        elif default is None:
            value = raw
        else:
            raise ConfigError(
                f"config key {key!r} expects {_type_name(default)}, got {raw!r}"
            ) from None
    if isinstance(default, tuple | list) and not isinstance(value, tuple | list):
        value = (value,)
    return _coerce(key, default, value)


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Iterable[str], stage: str
) -> ml_collections.ConfigDict:
    """Apply ``key=value`` overrides (dotted keys) to a validated config of ``stage``.

    Values are parsed as the type the key has in ``config``: strings verbatim, bools from
    true/false/1/0/yes/no (a bare ``key`` is true), numbers and tuples as Python literals.

    Returns:
      The validated, locked config.

    Raises:
      ConfigError: an unknown key, a key that cannot be overridden, or a value that does
        not parse as the key's type.
    """
    config = validate(config, stage)  # every schema key present, with its type
    cfg = config.to_dict()
    fixed = FIXED_KEYS.get(stage, ("stage",))
    for item in overrides:
        key, raw = parse_override(item)
        if key in fixed:
            raise ConfigError(
                f"config key {key!r} cannot be overridden: the config file built its sections "
                f"from it; use a config file or variant with the {key.rsplit('.', 1)[-1]} "
                "you want"
            )
        parts = key.split(".")
        node_cfg: Any = config
        node: Any = cfg
        for i, part in enumerate(parts):
            full = ".".join(parts[: i + 1])
            if not isinstance(node_cfg, ml_collections.ConfigDict) or part not in node_cfg:
                if isinstance(node_cfg, ml_collections.ConfigDict) and _is_open(
                    ".".join(parts[:i])
                ):
                    node_cfg = None  # a new free keyword argument: a Python literal
                    break
                where = ".".join(parts[:i])
                known = ", ".join(sorted(node_cfg.keys())) if hasattr(node_cfg, "keys") else ""
                raise ConfigError(
                    f"unknown config key {full!r} for stage {stage!r}"
                    + (f" (known in {where or 'the config'}: {known})" if known else "")
                )
            node_cfg = node_cfg[part]
            if i < len(parts) - 1:
                if not isinstance(node_cfg, ml_collections.ConfigDict):
                    raise ConfigError(f"config key {full!r} is not a group of keys")
                node = node[part]
        if isinstance(node_cfg, ml_collections.ConfigDict):
            raise ConfigError(f"config key {key!r} is a group of keys; override its members")
        node[parts[-1]] = _parse_value(key, node_cfg, raw)
    return validate(cfg, stage)


def load_config(
    spec: str | None, stage: str, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """Load a config file (or the stage's defaults), apply overrides and validate it.

    Args:
      spec: ``path.py[:variant]`` or a name under ``configs/``; None uses the schema defaults.
      stage: the stage the config is for.
      overrides: ``key=value`` strings (without the ``--config.`` prefix).

    Returns:
      The validated, locked ConfigDict.
    """
    cfg = load_config_file(spec) if spec else get_schema(stage)
    if "stage" not in cfg:
        cfg.stage = stage
    elif cfg.stage != stage:
        raise ConfigError(f"config {spec!r} is for stage {cfg.stage!r}, not {stage!r}")
    cfg = validate(cfg, stage)  # check the file itself before overriding it
    if not overrides:
        return cfg
    return apply_overrides(cfg, overrides, stage)


def is_finite_number(x: Any) -> bool:
    """Whether ``x`` is an int or a finite float (not a bool)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
