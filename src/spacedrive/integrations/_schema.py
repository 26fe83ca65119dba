"""JSON Schema validation, reduced to what we report: a JSON path and a message per error.

This is the one module that imports ``jsonschema`` (which ships no type information); the
rest of the package sees typed :class:`SchemaViolation` values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import jsonschema.validators  # type: ignore[import-untyped]

__all__ = ["SchemaViolation", "json_path", "metaschema_violations", "violations"]

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")
#: Longest message kept from jsonschema (its messages repeat the instance, which may be huge).
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """One error of an instance against a schema."""

    path: tuple[str | int, ...]  # where in the instance
    keyword: str  # the failing keyword: "type", "required", "pattern", ...
    message: str  # jsonschema's message, shortened
    instance: Any  # the value at ``path``
    schema: Mapping[str, Any]  # the subschema holding the keyword


def json_path(path: Iterable[str | int], root: str = "$") -> str:
    """``("a", 2, "b c")`` -> ``$.a[2]["b c"]``; with ``root=""``: ``a[2]["b c"]``."""
    out = root
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


def violations(schema: Mapping[str, Any], instance: Any) -> list[SchemaViolation]:
    """Every error of ``instance`` against ``schema``, sorted by path (formats are checked)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return _reduce(validator.iter_errors(instance))


def metaschema_violations(schema: Any) -> list[SchemaViolation]:
    """Every error of ``schema`` against the metaschema its ``$schema`` names (2020-12 if none)."""
    known = jsonschema.validators.validator_for(schema, default=None) if isinstance(schema, Mapping) else 1
    if isinstance(schema, Mapping) and "$schema" in schema and known is None:
        return [
            SchemaViolation(
                ("$schema",),
                "$schema",
                f"unknown metaschema {schema['$schema']!r}; use a JSON Schema draft URI "
                "(e.g. https://json-schema.org/draft/2020-12/schema)",
                schema["$schema"],
                {},
            )
        ]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return _reduce(cls(cls.META_SCHEMA).iter_errors(schema))


def _reduce(errors: Iterable[Any]) -> list[SchemaViolation]:
    found = [
        SchemaViolation(
            tuple(error.absolute_path),
            str(error.validator),
            _shorten(str(error.message)),
            error.instance,
            error.schema if isinstance(error.schema, Mapping) else {},
        )
        for error in errors
    ]
    return sorted(found, key=lambda v: (_path_key(v.path), v.keyword, v.message))


def _path_key(path: tuple[str | int, ...]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in path)


def _shorten(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
