"""Loading, overriding and validating stage configs.

A config is a Python file with ``get_config(variant=None)`` returning an
``ml_collections.ConfigDict`` (big_vision style). It is named either by path,
``path/to/file.py[:variant]``, or by its name under this package's ``configs/`` directory,
``paper/resnet50[:variant]`` or ``demo/default:quick``. Command-line overrides
``--config.train.steps=10`` are applied on top, then the result is validated against the
stage's schema (:mod:`synthaug.pipeline.schemas`).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from synthaug.pipeline.errors import ConfigError, MissingPathError
from synthaug.pipeline.schemas import get_schema

__all__ = [
    "CONFIGS_DIR",
    "apply_overrides",
    "list_configs",
    "load_config",
    "load_config_file",
    "parse_override",
    "resolve_config_path",
    "validate",
]

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent / "configs"


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
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else e
        raise ConfigError(f"config {str(path)!r}: {msg}") from e
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


def validate(
    config: Mapping[str, Any] | ml_collections.ConfigDict, stage: str | None = None
) -> ml_collections.ConfigDict:
    """Merge ``config`` into the schema of its stage, checking keys and types.

    Args:
      config: a config (a ConfigDict or a plain nested dict). Its ``stage`` key picks the
        schema unless ``stage`` is given.
      stage: the expected stage; a config for another stage is an error.

    Returns:
      A new, locked ConfigDict: the schema's defaults updated with ``config``.

    Raises:
      ConfigError: an unknown key, a wrong type, or a config for another stage.
    """
    cfg = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    own = cfg.get("stage")
    if stage is None:
        if own is None:
            raise ConfigError("config has no 'stage' key; cannot pick its schema")
        stage = own
    elif own is not None and own != stage:
        raise ConfigError(f"config is for stage {own!r}, not {stage!r}")
    schema = get_schema(stage)
    _merge(schema, cfg, prefix="")
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
            if isinstance(value, ml_collections.ConfigDict):
                value = value.to_dict()
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {full!r} expects a group of keys, got {value!r}")
            _merge(default, value, prefix=full + ".")
        else:
            schema[key] = _coerce(full, default, value)


def parse_override(text: str) -> tuple[str, str]:
    """Split ``key=value`` (the part after ``--config.``) into key and raw value."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"bad override {text!r}; expected --config.key=value")
    return key, raw


def _parse_value(key: str, default: Any, raw: str) -> Any:
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
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if isinstance(default, tuple | list):  # a comma-separated list of strings
            value = tuple(s.strip() for s in raw.split(",") if s.strip())
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
    """Apply ``key=value`` overrides (dotted keys) to a config of ``stage``.

    Values are parsed according to the schema's type for the key: strings verbatim, bools
    from true/false/1/0, numbers and tuples as Python literals.

    Raises:
      ConfigError: an unknown key or a value that does not parse as the key's type.
    """
    schema = get_schema(stage)
    cfg = config.to_dict()
    for item in overrides:
        key, raw = parse_override(item)
        parts = key.split(".")
        node_schema: Any = schema
        node: dict = cfg
        for i, part in enumerate(parts):
            full = ".".join(parts[: i + 1])
            if not isinstance(node_schema, ml_collections.ConfigDict) or part not in node_schema:
                raise ConfigError(f"unknown config key {full!r} for stage {stage!r}")
            node_schema = node_schema[part]
            if i < len(parts) - 1:
                if isinstance(node_schema, ml_collections.ConfigDict):
                    node = node.setdefault(part, {})
                else:
                    raise ConfigError(f"config key {full!r} is not a group of keys")
        if isinstance(node_schema, ml_collections.ConfigDict):
            raise ConfigError(f"config key {key!r} is a group of keys; override its members")
        node[parts[-1]] = _parse_value(key, node_schema, raw)
    return ml_collections.ConfigDict(cfg)


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
    cfg = load_config_file(spec) if spec else ml_collections.ConfigDict({"stage": stage})
    if "stage" not in cfg:
        cfg.stage = stage
    elif cfg.stage != stage:
        raise ConfigError(f"config {spec!r} is for stage {cfg.stage!r}, not {stage!r}")
    cfg = validate(cfg, stage)  # check the file itself before overriding it
    cfg.unlock()
    cfg = apply_overrides(cfg, overrides, stage)
    return validate(cfg, stage)
