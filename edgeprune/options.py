"""Typed stage options built from flag-spelled values: the schema the bench suite checks.

Every stage's options are a frozen dataclass. `option_names(cls)` lists the names a suite's
`args:` may use (the CLI's long flags, `batch-size`, `lr`, ...), and `from_args(cls, args)`
builds the dataclass from such a mapping, coercing each value to its field's type, so a YAML
file, a notebook and a command line reach the same validated object.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from edgeprune.errors import EdgepruneError

T = TypeVar("T")

# Names a stage call takes beside its options (where its output goes, ...); never option fields.
CALL_NAMES = ("output", "force", "quiet", "allow-unsafe")


def flag(default: Any = dataclasses.MISSING, *, name: str | None = None, negate: bool = False,
         off: str | None = None) -> Any:
    """A dataclass field whose flag name differs from its field name; `negate`: the flag sets
    the opposite (`tune` <- `no-tune: true`); `off`: a second flag that turns a boolean off
    (`int8_io` <- `float-io: true`, as the CLI's `--int8-io/--float-io`)."""
    metadata = {"flag": name, "negate": negate, "off": off}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable default")
    return dataclasses.field(default=default, metadata=metadata)


def internal(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is not an option: no flag names it and `from_args` refuses it."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"internal": True})


def _fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name.replace("_", "-")


def _flags(cls: type) -> dict[str, tuple[dataclasses.Field, bool]]:
    """Flag name -> (field, whether the flag sets the field's opposite)."""
    flags: dict[str, tuple[dataclasses.Field, bool]] = {}
    for f in _fields(cls):
        flags[_flag_name(f)] = (f, bool(f.metadata.get("negate")))
        if f.metadata.get("off"):
            flags[f.metadata["off"]] = (f, True)
    return flags


def option_names(cls: type) -> tuple[str, ...]:
    """The flag-spelled names of `cls`'s fields (and their `off` flags)."""
    return tuple(_flags(cls))


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` (YAML scalar, list or CLI text) as the field's type says."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        return _coerce(value, args[0], name)
    try:
        if origin is tuple:
            items = value if isinstance(value, (list, tuple)) else [
                v for v in str(value).split(",") if v.strip()]
            return tuple(_coerce(v, args[0] if args else str, name) for v in items)
        if origin is dict or hint is dict:
            if not isinstance(value, Mapping):
                raise ValueError(f"expected a mapping, got {value!r}")
            return dict(value)
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise EdgepruneError(f"{name}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


def from_args(cls: type[T], args: Mapping[str, Any], **fixed: Any) -> T:
    """Build options `cls` from flag-spelled `args` ({"batch-size": 32, "lr": 0.01}) and `fixed`
    field values; an unknown name is a one-line EdgepruneError listing the accepted ones."""
    flags = _flags(cls)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in args.items():
        name = str(key).replace("_", "-")
        if name in CALL_NAMES:
            continue
        found = flags.get(name) or flags.get(str(key))
        if found is None:
            raise EdgepruneError(f"unknown option {key!r}; expected one of {', '.join(sorted(flags))}")
        field, negate = found
        value = _coerce(value, hints[field.name], name)
        values[field.name] = (not value) if negate else value
    for name, value in fixed.items():
        values[name] = _coerce(value, hints[name], name) if name in hints else value
    return cls(**values)
