"""One typed, validated configuration: ``params.yaml`` -> nested frozen dataclasses (:class:`Config`).

The machinery (YAML, coercion, bounds, overrides) is in :mod:`fieldlab.config.core`; each study's sections are in
their own module. Everything is re-exported here, so ``from fieldlab.config import load_config, ModelConfig`` works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldlab.config.cluster import ClusterConfig, JobqueueConfig
from fieldlab.config.core import (
    apply_overrides,
    build,
    parse_override,
    read_params,
    spec,
    stage_parser,
    to_dict,
    yaml_load,
)
from fieldlab.config.explore import ExploreConfig, ExploreNGPRanges, ExploreRanges
from fieldlab.config.inr import INRConfig, NGPConfig
from fieldlab.config.mpm import DiscsSceneConfig, MPM128SceneConfig, MPMConfig, MPMSceneConfig
from fieldlab.config.potential import (
    ConditioningConfig,
    ConductivityConfig,
    DataConfig,
    EncoderConfig,
    EvalConfig,
    FNOConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    OODConfig,
    PhantomConfig,
    PhysicsConfig,
    PriorConfig,
    SolverConfig,
    SourceConfig,
    SpacingsConfig,
    SubgridConfig,
    TrainConfig,
    UNetConfig,
    check_loss_muscle,
)
from fieldlab.errors import ConfigError

__all__ = [
    "ClusterConfig",
    "ConditioningConfig",
    "ConductivityConfig",
    "Config",
    "DataConfig",
    "DiscsSceneConfig",
    "EncoderConfig",
    "EvalConfig",
    "ExploreConfig",
    "ExploreNGPRanges",
    "ExploreRanges",
    "FNOConfig",
    "INRConfig",
    "JobqueueConfig",
    "LogConfig",
    "LossConfig",
    "MPM128SceneConfig",
    "MPMConfig",
    "MPMSceneConfig",
    "ModelConfig",
    "NGPConfig",
    "OODConfig",
    "PhantomConfig",
    "PhysicsConfig",
    "PriorConfig",
    "SolverConfig",
    "SourceConfig",
    "SpacingsConfig",
    "SubgridConfig",
    "TrainConfig",
    "UNetConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
    "read_params",
    "spec",
    "stage_parser",
    "to_dict",
    "yaml_load",
]


# ---- root -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The whole of params.yaml."""

    seed: int = spec(0, ge=0)
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    subgrid: SubgridConfig = field(default_factory=SubgridConfig)
    spacings: SpacingsConfig = field(default_factory=SpacingsConfig)
    mpm: MPMConfig = field(default_factory=MPMConfig)
    inr: INRConfig = field(default_factory=INRConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        check_loss_muscle(self.loss, self.physics.conductivity, self.data)


def config_from_dict(raw: Mapping[str, Any], source: str = "params") -> Config:
    """Validate a plain mapping (as parsed from YAML) into a :class:`Config`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return build(Config, raw, "", source)


def load_config(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Config:
    """Load, override and validate ``params.yaml``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "params.yaml"
    >>> _ = p.write_text("model:\\n  backbone: fno\\n")
    >>> load_config(p, ["model.backbone=unet"]).model.backbone
    'unet'
    """
    return config_from_dict(apply_overrides(read_params(path), overrides), source=str(path))
