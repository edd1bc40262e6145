"""The subset of JSON Schema tool parameters use, validated strictly: object with properties, required,
additionalProperties (false by default here: unexpected arguments are refused), and per property type, enum,
minimum/maximum, minLength/maxLength, pattern. Enough to refuse bad arguments before any tool code runs."""
from __future__ import annotations

import re

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


class SchemaError(ValueError):
    pass


def check_schema(schema: dict) -> None:
    """Refuse tool definitions this validator could not enforce (caught at registration, not at call time)."""
    if schema.get("type") != "object":
        raise SchemaError("tool parameters must be a JSON schema of type object")
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") not in _TYPES:
            raise SchemaError(f"property '{name}': type must be one of {', '.join(_TYPES)}")
    for name in schema.get("required", []):
        if name not in schema.get("properties", {}):
            raise SchemaError(f"required property '{name}' is not defined")


def validate(schema: dict, args) -> list[str]:
    """Every problem with ``args`` as readable messages (empty when valid)."""
    if not isinstance(args, dict):
        return ["args must be a JSON object"]
    errors = []
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in args:
            errors.append(f"'{name}' is required")
    if not schema.get("additionalProperties", False):
        for name in sorted(set(args) - set(properties)):
            errors.append(f"'{name}' is not a parameter of this tool")
    for name, value in args.items():
        prop = properties.get(name)
        if prop is None:
            continue
        kind = prop["type"]
        if not _TYPES[kind](value):
            errors.append(f"'{name}' must be of type {kind}")
            continue
        if "enum" in prop and value not in prop["enum"]:
            errors.append(f"'{name}' must be one of {', '.join(map(str, prop['enum']))}")
        if kind in ("integer", "number"):
            if "minimum" in prop and value < prop["minimum"]:
                errors.append(f"'{name}' must be >= {prop['minimum']}")
            if "maximum" in prop and value > prop["maximum"]:
                errors.append(f"'{name}' must be <= {prop['maximum']}")
        if kind == "string":
            if "minLength" in prop and len(value) < prop["minLength"]:
                errors.append(f"'{name}' must be at least {prop['minLength']} characters")
            if "maxLength" in prop and len(value) > prop["maxLength"]:
                errors.append(f"'{name}' must be at most {prop['maxLength']} characters")
            if "pattern" in prop and not re.fullmatch(prop["pattern"], value):
                errors.append(f"'{name}' does not match {prop['pattern']}")
    return errors


def with_defaults(schema: dict, args: dict) -> dict:
    merged = {name: prop["default"] for name, prop in schema.get("properties", {}).items() if "default" in prop}
    merged.update(args)
    return merged
