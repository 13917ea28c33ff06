"""params.yaml: loading, schema validation with defaults, and typed views of its sections."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "params.schema.yaml"
T = TypeVar("T")


def _extend_with_default(validator_class):
    """A jsonschema validator that also fills in each property's `default` (as Snakemake's validate)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for prop, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(prop, json.loads(json.dumps(sub["default"])))
        yield from validate_properties(validator, properties, instance, schema)

    import jsonschema

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    _extend_with_default(jsonschema.Draft202012Validator)(schema).validate(config)
    return config


def load(path: str | Path = ROOT / "params.yaml") -> dict:
    return validate(yaml.safe_load(Path(path).read_text()) or {})


def section(cls: type[T], values: dict | str | None) -> T:
    """Build a params dataclass from a dict (or JSON text); unknown keys are an error, not ignored."""
    if isinstance(values, str):
        values = json.loads(values)
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)} (known: {sorted(names)})")
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            if dataclasses.is_dataclass(f.type) or (isinstance(f.default, object) and
                                                    dataclasses.is_dataclass(f.default) and isinstance(v, dict)):
                v = section(type(f.default), v)
            kw[f.name] = v
    return cls(**kw)


def dataset(config: dict, name: str) -> dict:
    try:
        ds = dict(config["datasets"][name])
    except KeyError:
        raise KeyError(f"dataset {name!r} is not defined in params.yaml datasets: "
                       f"{sorted(config.get('datasets', {}))}") from None
    ds.setdefault("name", name)
    return ds
