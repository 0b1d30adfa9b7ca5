"""What the params models (tunepipe/params.py) tell the outside: params.schema.json, which editors
read through params.yaml's `# yaml-language-server: $schema=params.schema.json` line to complete
and check keys, and the params reference page (docs/reference/params.md). Both are generated, so
neither can drift from the code that reads params.yaml; tests keep the committed copies current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from tunepipe import io
from tunepipe.params import Params

SCHEMA_FILE = "params.schema.json"
REFERENCE_FILE = "docs/reference/params.md"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


class _Untitled(GenerateJsonSchema):
    """No `title` per field: it only repeats the key, and editors show the description instead."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def schema() -> dict[str, Any]:
    """params.yaml's JSON Schema: every key typed, ranged and described; unknown keys refused."""
    body = Params.model_json_schema(mode="validation", schema_generator=_Untitled)
    _fill_defaults(body, body["properties"], Params().model_dump(mode="json"))
    return {
        "$schema": DRAFT,
        "title": "tunepipe params.yaml",
        "description": "Parameters of the tunepipe pipeline, one section per stage. Generated from "
        "tunepipe/params.py by `tunepipe params schema`; do not edit.",
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }


def _fill_defaults(doc: dict[str, Any], props: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Defaults made by a factory (an empty list, a section) are left out by pydantic: put the
    plain ones in, so editors and the reference show them too."""
    for key, spec in props.items():
        ref = _ref(spec)
        if ref:
            _fill_defaults(doc, doc["$defs"][ref]["properties"], defaults[key])
        elif "default" not in spec:
            spec["default"] = defaults[key]


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def write(path: Path, text: str) -> bool:
    """Write `text` to `path` (atomically) unless it already holds it; whether it changed."""
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    io.write_text(path, text)
    return True


# --- the reference page ------------------------------------------------------------------------


def _ref(spec: dict[str, Any]) -> str | None:
    ref = spec.get("$ref")
    return ref.rpartition("/")[2] if ref else None


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _type(spec: dict[str, Any]) -> str:
    """A property's schema in a few words: `number > 0`, `integer ≥ 1, or null`, `one of a, b`."""
    if "anyOf" not in spec:
        return _one(spec)
    options = [_one(s) for s in spec["anyOf"] if s.get("type") != "null"]
    nullable = len(options) < len(spec["anyOf"])
    return " or ".join(options) + _limits(spec) + (", or null" if nullable else "")


def _one(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        text = "one of " + ", ".join(f"`{v}`" for v in spec["enum"])
    elif "const" in spec:
        text = f"`{spec['const']}`"
    elif spec.get("type") == "array":
        text = f"list of {_type(spec['items'])}" if "items" in spec else "list"
    elif spec.get("type") == "object" and "properties" in spec:
        text = "{" + ", ".join(f"{k}: {_type(v)}" for k, v in spec["properties"].items()) + "}"
    elif spec.get("type") == "object":
        values = spec.get("additionalProperties")
        text = f"mapping of {_type(values)}" if isinstance(values, dict) and values else "mapping"
    else:
        text = spec.get("type", "any")
    return text + _limits(spec)


def _limits(spec: dict[str, Any]) -> str:
    ops = (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤"))
    bounds = [f"{op} {spec[key]:g}" for key, op in ops if key in spec]
    text = f" {', '.join(bounds)}" if bounds else ""
    return text + (f" matching `{spec['pattern']}`" if "pattern" in spec else "")


def _cell(text: str) -> str:
    """Text for a table cell: pipes escaped; outside `code`, < and * kept literal (not HTML, not
    emphasis)."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace("*", "\\*")
    return "`".join(parts)


def _table(props: dict[str, Any], at: str, defs: dict[str, Any], out: list[str]) -> list[tuple[str, str]]:
    """One section's table into `out`; the sub-sections it holds, to render after it."""
    nested = []
    out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, spec in props.items():
        dotted = f"{at}.{key}".lstrip(".")
        ref = _ref(spec)
        if ref:
            nested.append((dotted, ref))
            kind, default = f"section `{dotted}`", "(below)"
        else:
            kind, default = _type(spec), f"`{_value(spec['default'])}`" if "default" in spec else ""
        description = spec.get("description", "")
        out.append(f"| `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(description)} |")
    out.append("")
    return nested


def reference() -> str:
    """The params reference page: one table per section (key, type, default, description)."""
    doc = schema()
    defs = doc["$defs"]
    out = [
        "# params.yaml reference",
        "",
        "<!-- Generated from tunepipe/params.py by `tunepipe params docs`; do not edit. -->",
        "",
        "Every key of `params.yaml`, by section. A key left out takes its default; an unknown key is",
        "an error. The same models give `params.schema.json`, which editors with the YAML language",
        "server read through the first line of `params.yaml` to complete and check keys as you type.",
        "",
        "## Top level",
        "",
    ]
    todo = _table(doc["properties"], "", defs, out)
    while todo:
        dotted, ref = todo.pop(0)
        out += [f"## {dotted}", ""]
        description = defs[ref].get("description")
        if description:
            out += [" ".join(description.split()), ""]
        todo = _table(defs[ref]["properties"], dotted, defs, out) + todo
    return "\n".join(out).rstrip("\n") + "\n"


def generate(root: Path, what: str, output: Path | None = None) -> tuple[Path, bool]:
    """Write the schema (`what` = schema) or the reference page (docs) under the project `root`,
    or to `output`; the path and whether it changed."""
    text, default = (schema_text(), SCHEMA_FILE) if what == "schema" else (reference(), REFERENCE_FILE)
    path = Path(output) if output is not None else Path(root) / default
    return path, write(path, text)
