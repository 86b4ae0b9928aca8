"""The ``inr`` keys each model reads, and dotted access to the nested ones (``ngp.levels`` is ``inr: {ngp: {levels}}``).

What the stage reads per ``inr.model`` (:mod:`fieldlab.inr.models.registry` and :mod:`fieldlab.inr.fit`):

============  =====================================================================================================
``siren_*``   ``hidden_features``, ``hidden_layers``, ``omega`` (and ``learn_omega``, ``omega_lr``); ``siren_t`` has
              no position input and ignores ``xy_period``
``ngp``       ``ngp.*`` (hash grid and its ReLU MLP); the periods divide the grid resolution along t and x, y
all INRs      ``lr``, ``total_steps``, ``batch_size`` (frames per step), ``t_period``, ``grad_clip``, data keys
``pod``       ``pod.rank``, ``pod.target_r2`` and the data keys only (one SVD, no training)
``pod_res..`` ``pod.*`` and the keys of its ``pod.residual_model`` (``ngp`` or ``siren_txy``) as above
============  =====================================================================================================

A mutation of a key the model ignores would change nothing but the budget-capped ``total_steps``, so the agents
mutate only :func:`mutable_keys` and the guard reverts edits of ignored keys (:func:`ignored_by`).

Examples
--------
>>> p = {"model": "ngp", "lr": 1e-3, "ngp": {"levels": 16, "features": 2}}
>>> flatten(p)
{'model': 'ngp', 'lr': 0.001, 'ngp.levels': 16, 'ngp.features': 2}
>>> get_value(p, "ngp.levels"), with_value(p, "ngp.levels", 18)["ngp"], p["ngp"]["levels"]
(16, {'levels': 18, 'features': 2}, 16)
"""

from __future__ import annotations

import copy
from typing import Any

from fieldlab.config import INRConfig

SIREN_MUTABLE = ("lr", "hidden_features", "hidden_layers", "omega", "total_steps", "batch_size", "t_period",
                 "xy_period")  # fmt: skip
NGP_MUTABLE = (
    "lr",
    "ngp.levels",
    "ngp.features",
    "ngp.log2_table_size",
    "ngp.base_resolution",
    "ngp.growth",
    "ngp.mlp_width",
    "ngp.mlp_layers",
    "total_steps",
    "batch_size",
    "t_period",
    "xy_period",
)
POD_MUTABLE = ("pod.rank",)
#: the inr keys mutated inside a block, per model (field_name and n_training_frames change only between blocks);
#: ``pod_residual`` with ``pod.residual_model: siren_txy`` mutates ``pod.rank`` and the SIREN keys instead
MUTABLE: dict[str, tuple[str, ...]] = {
    "siren_t": tuple(k for k in SIREN_MUTABLE if k != "xy_period"),
    "siren_id": SIREN_MUTABLE,
    "siren_txy": SIREN_MUTABLE,
    "ngp": NGP_MUTABLE,
    "pod": POD_MUTABLE,
    "pod_residual": POD_MUTABLE + NGP_MUTABLE,
}
MODELS = tuple(MUTABLE)
#: the model the stage builds when params have no ``model`` key
DEFAULT_MODEL = INRConfig().model
DEFAULT_RESIDUAL = INRConfig().pod.residual_model
SIREN_ONLY = ("hidden_features", "hidden_layers", "omega", "learn_omega", "omega_lr")
#: keys only a trained network reads (``pod`` ignores them)
TRAINING = ("lr", "total_steps", "batch_size", "t_period", "xy_period", "grad_clip")


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ngp": {"levels": 16}}`` -> ``{"ngp.levels": 16}``: one dotted key per leaf value."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


_MISSING = object()


def has_key(params: dict[str, Any], key: str) -> bool:
    """Whether the dotted ``key`` holds a value in ``params``."""
    return get_value(params, key, _MISSING) is not _MISSING


def get_value(params: dict[str, Any], key: str, default: Any = None) -> Any:
    """Value of the dotted ``key`` (``default`` when a level is missing)."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def with_value(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Copy of ``params`` with the dotted ``key`` set (nested mappings copied, missing ones created)."""
    out = copy.deepcopy(params)
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value
    return out


def model_of(params: dict[str, Any]) -> str:
    """``params["model"]``, or the stage's default model when absent."""
    return str(params.get("model", DEFAULT_MODEL))


def residual_of(params: dict[str, Any]) -> str:
    """``params["pod"]["residual_model"]``, or the stage's default when absent."""
    return str(get_value(params, "pod.residual_model", DEFAULT_RESIDUAL))


def ignored_by(model: str, key: str, residual_model: str = DEFAULT_RESIDUAL) -> bool:
    """Whether ``inr.model = model`` never reads the dotted inr ``key`` (see the module docstring);
    ``residual_model`` is the network of ``pod_residual``."""
    is_ngp, is_pod = key.startswith("ngp.") or key == "ngp", key.startswith("pod.") or key == "pod"
    if model == "pod":
        return key in SIREN_ONLY or key in TRAINING or is_ngp or key == "pod.residual_model"
    if model == "pod_residual":
        return False if is_pod else ignored_by(residual_model, key)
    if is_pod:
        return model in MODELS
    if model == "ngp":
        return key in SIREN_ONLY
    if model in MODELS:  # SIREN variants
        return is_ngp or (model == "siren_t" and key == "xy_period")
    return False


def model_keys(params: dict[str, Any]) -> tuple[str, ...]:
    """The keys mutated for ``params``' model (``pod_residual``: ``pod.rank`` and its residual network's keys)."""
    model = model_of(params)
    if model == "pod_residual" and residual_of(params) != "ngp":
        return POD_MUTABLE + SIREN_MUTABLE
    return MUTABLE.get(model, SIREN_MUTABLE)


def mutable_keys(params: dict[str, Any]) -> list[str]:
    """The mutable keys of ``params``' model present in ``params``, then ``model`` when present."""
    keys = [k for k in model_keys(params) if has_key(params, k)]
    return [*keys, "model"] if "model" in params else keys
