"""Fine-tuning: initialise from an existing parameter tree (whole or partial)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from synthaug.diffusion_core.train import TrainState, state_from_params

log = logging.getLogger(__name__)

__all__ = ["MergeReport", "init_from_pretrained", "merge_params"]


@dataclasses.dataclass
class MergeReport:
    """What :func:`merge_params` did, by '/'-joined parameter name.

    Attributes:
      loaded: parameters taken from the pretrained tree.
      missing: parameters of the model absent from the pretrained tree (kept at init).
      unexpected: pretrained entries the model does not have (ignored).
    """

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} parameters; missing {len(self.missing)}: "
            f"{self.missing}; unexpected {len(self.unexpected)}: {self.unexpected}"
        )


def _flat(tree: Any) -> dict[str, Any]:
    tree = jax.tree.map(lambda x: x, tree)  # FrozenDict / mappings -> plain dicts
    return traverse_util.flatten_dict(dict(tree), sep="/")


def merge_params(
    init_params: Any, pretrained: Any, *, strict: bool = False
) -> tuple[Any, MergeReport]:
    """Overwrite ``init_params`` with the entries of ``pretrained`` that it has.

    Args:
      init_params: the freshly initialised parameter tree (defines the structure).
      pretrained: a whole parameter tree or a subset of it (nested dicts).
      strict: raise if any parameter is missing or unexpected.

    Returns:
      ``(params, report)``: the merged tree (dtypes of ``init_params``) and a
      :class:`MergeReport` naming the missing and unexpected keys.

    Raises:
      ValueError: a shape mismatch (naming the parameter and both shapes), or, with
        ``strict``, missing/unexpected parameters.
    """
    flat_init = _flat(init_params)
    flat_pre = _flat(pretrained)
    merged, loaded = {}, []
    for name, value in flat_init.items():
        if name in flat_pre:
            new = flat_pre[name]
            if tuple(new.shape) != tuple(value.shape):
                raise ValueError(
                    f"parameter {name}: pretrained shape {tuple(new.shape)} does not match "
                    f"the model's {tuple(value.shape)}"
                )
            merged[name] = jnp.asarray(new, dtype=value.dtype)
            loaded.append(name)
        else:
            merged[name] = value
    report = MergeReport(
        loaded=sorted(loaded),
        missing=sorted(set(flat_init) - set(flat_pre)),
        unexpected=sorted(set(flat_pre) - set(flat_init)),
    )
    if report.missing or report.unexpected:
        if strict:
            raise ValueError(f"pretrained parameters do not match the model: {report}")
        log.warning("fine-tuning init: %s", report)
    return traverse_util.unflatten_dict(merged, sep="/"), report


def init_from_pretrained(
    state: TrainState, pretrained: Any, config, *, strict: bool = False
) -> tuple[TrainState, MergeReport]:
    """A fresh step-0 state whose params (and EMA) come from ``pretrained``.

    The optimizer state is re-initialised (with the freezing of ``config.train.freeze``).

    Args:
      state: a freshly created state (from :func:`create_train_state`).
      pretrained: a whole or partial parameter tree (e.g. from
        :func:`synthaug.diffusion_core.checkpoint.load_params`).
      config: the full config.
      strict: see :func:`merge_params`.

    Returns:
      ``(state, report)``.
    """
    params, report = merge_params(state.params, pretrained, strict=strict)
    return state_from_params(params, config), report
