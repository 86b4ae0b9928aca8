"""YAML, typed coercion and bounds: the machinery behind every section schema of ``params.yaml``.

Every section is a frozen dataclass (one module per study: ``potential``, ``mpm``, ``inr``, ``explore``). Loading
checks every key: unknown keys, wrong types and out-of-range values raise :class:`~fieldlab.errors.ConfigError` with
one line naming the dotted key, the value received and what is allowed, e.g.
``params.yaml: train.lr = -0.001: expected a number > 0``.

Dotted overrides use the grammar of ``dvc exp run -S``: ``model.backbone=unet``, ``train.lr=3e-4``,
``data.grid=[48,24,24]``; the value is parsed as YAML.

Ranges and choices live in the field metadata (:func:`spec`), next to the default they constrain.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from fieldlab.errors import ConfigError

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 and ``dvc -S`` do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """A mapping without repeated keys: PyYAML would silently keep the last of ``lr: 1`` ... ``lr: 2``.

    Only the keys written in the mapping itself count; a key that overrides one merged in with ``<<`` is fine.
    """
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_load(text: str) -> Any:
    """Parse YAML text with the project's loader (scientific notation without a dot is a float, no repeated keys)."""
    return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader: no arbitrary objects


def spec(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    off: float | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with a default and inclusive/exclusive bounds checked on load.

    Bounds apply to numbers and element-wise to tuples of numbers. ``off`` is the one number that switches the
    feature off and is allowed outside the bounds: ``spec(0, ge=2, off=0)`` accepts 0 and every value >= 2, and
    refuses 1 with "expected 0 (off) or a value >= 2".
    """
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "off": off, "doc": doc})


def check_ranges(obj: Any, section: str) -> None:
    """Every ``tuple[float, float]`` field of ``obj`` is a (low, high) range: require low <= high."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("range") and value[0] > value[1]:
            raise ConfigError(f"params: {section}.{f.name} = {list(value)}: expected [low, high] with low <= high")


def range_spec(default: tuple[float, float], *, gt: float | None = None, ge: float | None = None, doc: str = "") -> Any:
    """A (low, high) range field; each sample draws uniformly from it."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "doc": doc, "range": True})


# ----------------------------------------------------------------------------------------------------------------
# Loading and validation.
# ----------------------------------------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    """Human-readable name of an annotation for error messages."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _fail(source: str, key: str, value: Any, expected: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: {key} = {value!r}: expected {expected}")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in canonical form (tuples, floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            _fail(source, key, value, "a mapping of keys")
        return build(tp, value, key, source)
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(source, key, value, _describe(tp))
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        _fail(source, key, value, _describe(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            _fail(source, key, value, _describe(tp))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(source, key, value, _describe(tp))
        return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, key, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, key, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(source, key, value, "a number")
        if not math.isfinite(value):
            _fail(source, key, value, "a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, key, value, "a string")
        return value
    if tp is Any:
        return value
    raise TypeError(f"config annotation {tp!r} of {key} is not supported")  # a bug in this module


def _check_bounds(value: Any, meta: Mapping[str, Any], key: str, source: str) -> None:
    off = meta.get("off")
    if off is not None and not isinstance(value, bool) and value == off:
        return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        for name, ok, words in (
            ("ge", lambda x, b: x >= b, ">="),
            ("gt", lambda x, b: x > b, ">"),
            ("le", lambda x, b: x <= b, "<="),
            ("lt", lambda x, b: x < b, "<"),
        ):
            bound = meta.get(name)
            if bound is not None and not ok(v, bound):
                expected = f"{'a value' if len(values) == 1 else 'values'} {words} {bound}"
                if off is not None:
                    expected = f"{off!r} (off) or {expected}"
                _fail(source, key, value, expected)


def build(cls: type[T], data: Mapping[str, Any], prefix: str, source: str) -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in known:
            dotted = f"{prefix}.{name}" if prefix else str(name)
            _fail(source, dotted, data[name], "no such key; allowed: " + ", ".join(sorted(known)))
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        dotted = f"{prefix}.{name}" if prefix else name
        value = _coerce(data[name], hints[name], dotted, source)
        _check_bounds(value, f.metadata, dotted, source)
        kwargs[name] = value
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], parsed YAML value), as ``dvc exp run -S`` does."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY.SUBKEY=VALUE (e.g. model.backbone=unet)")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``a.b=value`` override set (intermediate mappings created)."""
    out: dict[str, Any] = copy.deepcopy(dict(raw)) if raw else {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def read_params(path: str | Path) -> dict[str, Any]:
    """Parse a params file into a mapping, with one-line errors for missing, empty or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; expected a YAML params file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{path}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    if raw is None:
        raise ConfigError(f"{path}: empty params file; expected a mapping of sections (seed, data, model, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a config or a section, for YAML/JSON dumps and TensorBoard."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def stage_parser(description: str) -> argparse.ArgumentParser:
    """Argument parser shared by stage scripts: ``--params FILE`` and trailing ``KEY=VALUE`` overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")
    return parser
