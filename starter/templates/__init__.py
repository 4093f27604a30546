"""Templates: parameterised definitions for the seeds' scenarios, each with its test file.

A template is a folder here holding ``template.yaml`` (its description and parameters, each
with a type and a default), ``definition.yaml`` and ``test.yaml``. ``<% param %>`` in the two
latter is replaced by the parameter's value as a YAML flow value (JSON: ``"text"``, ``12``,
``["a", "b"]``), ``<% param[0] %>`` by a list's item; on a comment line, by the plain text.
Besides its own parameters every template gets ``name`` (the definition's name, also the file
names), ``file`` and ``test_file`` (the file names written).

``tideflow new NAME --template T --set key=value`` writes ``NAME.yaml`` and ``NAME.test.yaml``,
both checked first: they validate and pass ``tideflow test`` as written.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml

ParamType = Literal["string", "number", "integer", "boolean", "list"]
_TYPES: tuple[str, ...] = ("string", "number", "integer", "boolean", "list")
_PLACEHOLDER = re.compile(r"<%\s*([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?\s*%>")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_BUILT_IN = ("name", "file", "test_file")


class TemplateError(ValueError):
    """An unknown template or parameter, a value of the wrong type, a bad name."""


@dataclass(frozen=True)
class Parameter:
    """A template's parameter."""

    name: str
    type: ParamType
    default: Any
    description: str = ""


@dataclass(frozen=True)
class Template:
    """A template shipped with Tideflow."""

    name: str
    description: str
    scenario: str
    parameters: list[Parameter]

    def _text(self, part: str) -> str:
        return (resources.files("starter.templates") / self.name / part).read_text(encoding="utf-8")

    def values(self, name: str, given: dict[str, Any]) -> dict[str, Any]:
        """Every parameter's value: ``given`` checked against its type, else the default."""
        if not _NAME.match(name):
            raise TemplateError(
                f"name {name!r}: use letters, digits, '-' and '_' (it names the files too)"
            )
        known = {p.name: p for p in self.parameters}
        for key in given:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                options = ", ".join(known) or "none"
                raise TemplateError(
                    f"template {self.name} has no parameter {key!r}{hint}; its parameters: "
                    f"{options}"
                )
        values = {
            p.name: _checked(p, given[p.name]) if p.name in given else p.default
            for p in self.parameters
        }
        values.update(name=name, file=f"{name}.yaml", test_file=f"{name}.test.yaml")
        return values

    def render(self, name: str, given: dict[str, Any] | None = None) -> tuple[str, str]:
        """The definition's and the test file's text for ``name`` and the ``given`` values."""
        values = self.values(name, given or {})
        return _fill(self._text("definition.yaml"), values), _fill(self._text("test.yaml"), values)


def _checked(parameter: Parameter, value: Any) -> Any:
    kind = parameter.type
    wrong = TemplateError(f"parameter {parameter.name!r}: expected {kind}, got {value!r}")
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `--set version=2` parses as a number
        raise wrong
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(value, str):  # `--set labels=a,b,c`
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return value
    raise wrong


def _fill(text: str, values: dict[str, Any]) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        comment = line.lstrip().startswith("#")

        def value(match: re.Match[str], *, plain: bool = comment, line: str = line) -> str:
            name, index = match.group(1), match.group(2)
            if name not in values:
                raise TemplateError(f"the template uses an unknown parameter {name!r}")
            found = values[name]
            if index is not None:
                if not isinstance(found, list) or int(index) >= len(found):
                    raise TemplateError(f"parameter {name!r} has no item {index}")
                found = found[int(index)]
            if plain and isinstance(found, str):
                return found
            text = json.dumps(found, ensure_ascii=False)
            if _in_quotes(line, match.start()):
                # Inside a double-quoted scalar: the value's text, escaped for it.
                inner = found if isinstance(found, str) else text
                return json.dumps(inner, ensure_ascii=False)[1:-1]
            return text

        lines.append(_PLACEHOLDER.sub(value, line))
    return "".join(lines)


def _in_quotes(line: str, position: int) -> bool:
    """Whether ``position`` of a YAML line is inside a double-quoted scalar."""
    before = line[:position].replace("\\\\", "").replace('\\"', "")
    return before.count('"') % 2 == 1


def templates() -> list[Template]:
    """Every shipped template, by name."""
    out = []
    root = resources.files("starter.templates")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        meta = entry / "template.yaml"
        if not entry.is_dir() or not meta.is_file():
            continue
        data = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
        parameters = []
        for key, spec in (data.get("parameters") or {}).items():
            kind = spec.get("type", "string")
            assert kind in _TYPES and key not in _BUILT_IN, (entry.name, key)
            parameters.append(
                Parameter(key, kind, spec.get("default"), str(spec.get("description", "")))
            )
        out.append(
            Template(
                name=entry.name,
                description=str(data.get("description", "")),
                scenario=str(data.get("scenario", "")),
                parameters=parameters,
            )
        )
    return out


def template(name: str) -> Template:
    """The template ``name``; TemplateError (with a "did you mean") for an unknown one."""
    found = {t.name: t for t in templates()}
    if name in found:
        return found[name]
    close = [t for t in found if t.startswith(name)] or difflib.get_close_matches(
        name, list(found), n=1
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TemplateError(f"no template {name!r}{hint}; `tideflow templates` lists them")
