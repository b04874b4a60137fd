"""Stage 1 of 7 (scenario errors): ``ScenarioError`` and the schema knowledge behind its messages.

Turns pydantic's validation errors on a merged scenario tree into lines naming the file that
set the field (``Provenance``), the dotted field path (list items by their ``name``) and
what is allowed (the fields of the model there, the bounds of a number). Also answers
"which fields exist at this path?" by walking ``Scenario``'s annotations, which the loader
uses to fill blocks that an override reaches into.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from simulator import scenario as scenario_module
from simulator.scenario import Scenario

__all__ = ["Provenance", "ScenarioError"]

MAX_PROBLEMS = 5
Seg = str | int
Loc = tuple[Seg, ...]
Problem = tuple[str, str, str]  # (file, dotted field, message)


class ScenarioError(Exception):
    """An invalid scenario: which file, which field, what is wrong and what is allowed.

    ``problems`` holds every (file, field, message) found (at most five); ``file``,
    ``field`` and ``message`` are the first. ``str()`` gives one line per problem, e.g.
    ``scenarios/x.yaml: cities.Urumqi.agent_groups.day.headcount: Input should be greater
    than or equal to 0 (got -3). Fix: use a value >= 0``.
    """

    def __init__(
        self, file: str, field: str, message: str, problems: Sequence[Problem] = ()
    ) -> None:
        self.file, self.field, self.message = file, field, message
        self.problems = list(problems) or [(file, field, message)]
        super().__init__(str(self))

    def __str__(self) -> str:
        """Return one line per problem: ``file: field: message``."""
        return "\n".join(f"{f}: {fld}: {m}" if fld else f"{f}: {m}" for f, fld, m in self.problems)


class Provenance:
    """Which file set which part of a merged scenario tree (later entries win).

    ``root`` is the file at the bottom of the base chain (it set everything not recorded);
    ``top`` the file the user named (blamed for errors that have no field).
    """

    def __init__(self, root: str) -> None:
        self.root = self.top = root
        self.touched: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, source: str) -> None:
        """Record that ``source`` set the subtree at ``loc``."""
        self.touched.append((loc, source))

    def of(self, loc: Loc) -> str:
        """Return the source that last set ``loc``, a part of it, or a field containing it."""
        if not loc:
            return self.top
        for t, source in reversed(self.touched):
            n = min(len(t), len(loc))
            if t[:n] == loc[:n]:
                return source
        return self.root


# -- addressing the raw tree --------------------------------------------------------------------
def dotted(loc: Sequence[Seg]) -> str:
    """Join a location with dots."""
    return ".".join(str(s) for s in loc)


def find_item(items: list[Any], seg: Seg) -> int | None:
    """Return the position of the item called ``seg`` (by name first, then as an index)."""
    for i, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name")) == str(seg):
            return i
    if isinstance(seg, int) or seg.lstrip("-").isdigit():
        i = int(seg)
        if -len(items) <= i < len(items):
            return i % len(items)
    return None


def item_key(item: Any, index: int) -> Seg:
    """Return how a list item is addressed: by its name when it has one, else by position."""
    if isinstance(item, dict) and isinstance(item.get("name"), str | int):
        return str(item["name"])
    return index


# -- the schema: which fields exist where -------------------------------------------------------
def is_model(tp: Any) -> bool:
    """Tell whether ``tp`` is a pydantic model class."""
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``None`` from an annotation (a union of models: the first)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if is_model(a)]
            if len(args) != 1 and not models:
                return tp
            tp = args[0] if len(args) == 1 else models[0]
        else:
            return tp


def type_at(loc: Sequence[Seg], model: type[BaseModel] = Scenario) -> Any:
    """Return the annotation at ``loc`` (dict keys, list items consumed); None if unknown."""
    tp: Any = model
    for seg in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if is_model(tp):
            field = tp.model_fields.get(str(seg))
            if field is None:
                return None
            tp = field.annotation
        elif origin in (dict, typing.Mapping):
            tp = typing.get_args(tp)[1]
        elif origin in (tuple, list):
            tp = typing.get_args(tp)[0]
        else:
            return None
    return _unwrap(tp)


def allowed_fields(loc: Sequence[Seg]) -> list[str]:
    """Return the field names of the model at ``loc`` (empty when it is not a model)."""
    tp = type_at(loc)
    return list(tp.model_fields) if is_model(tp) else []


def default_container(path: Sequence[str]) -> dict[str, Any] | list[Any] | None:
    """Return the schema default of the mapping or list field at ``path``, as raw data.

    ``None`` when ``path`` is not a field of a model (a dict key, say) or its default is
    not a mapping or list. A block that defaults to ``None`` (``routing.overflow``) is ``{}``.
    """
    parent = type_at(path[:-1])
    if not is_model(parent) or path[-1] not in parent.model_fields:
        return None
    field = parent.model_fields[path[-1]]
    default = field.get_default(call_default_factory=True)
    if default is None or default is PydanticUndefined:
        tp = type_at(path)
        return {} if is_model(tp) or typing.get_origin(tp) in (dict, typing.Mapping) else None
    raw = TypeAdapter(field.annotation).dump_python(default, mode="json")
    return raw if isinstance(raw, dict | list) else None


# -- validation errors -> ScenarioError ---------------------------------------------------------
_MODEL_NAMES = {c.__name__ for c in vars(scenario_module).values() if is_model(c)}
_BOUNDS = {
    "greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<",
}


def _is_tag(seg: Seg) -> bool:
    """Tell pydantic's name for a union member in an error location (not a key of the data)."""
    if not isinstance(seg, str):
        return False
    return any(c in seg for c in "[](),'") or seg in _MODEL_NAMES or seg.startswith("function-")


def canonical(data: Any, loc: Sequence[Seg]) -> Loc:
    """Walk ``loc`` through the data: list items by name, pydantic's union tags dropped."""
    out: list[Seg] = []
    node = data
    for seg in loc:
        idx = find_item(node, seg) if isinstance(node, list) else None
        if isinstance(node, dict) and str(seg) in node:
            out.append(str(seg))
            node = node[str(seg)]
        elif idx is not None:
            out.append(item_key(node[idx], idx))
            node = node[idx]
        elif not _is_tag(seg):
            out.append(seg)
            node = None
    return tuple(out)


def _field_from_message(data: Any, loc: Loc, msg: str) -> tuple[Loc, str]:
    """Use the path a model-level error names ('cities.X.routing.overflow.to: ...')."""
    token = msg.split(" ", 1)[0]
    path = token.rstrip(":")
    sub = type_at(loc)
    if path and is_model(sub) and path.split(".")[0] in sub.model_fields:
        if token.endswith(":"):
            msg = msg[len(token):].strip()
        return canonical(data, loc + tuple(path.split("."))), msg
    return loc, msg


def _number(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else _number(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(err: Any, data: dict[str, Any], provenance: Provenance) -> Problem:
    """Turn one pydantic error into (file, dotted field, message with what is allowed)."""
    kind, msg, raw = err["type"], str(err["msg"]), tuple(err["loc"])
    msg = msg.removeprefix("Value error, ")
    loc, msg = _field_from_message(data, canonical(data, raw), msg)
    value = err.get("input")
    if kind == "extra_forbidden":
        allowed = allowed_fields(raw[:-1])
        guess = difflib.get_close_matches(str(raw[-1]), allowed, n=1)
        fix = f" Fix: did you mean '{guess[0]}'?" if guess else " Fix: remove or rename it."
        msg = f"unknown field.{fix} Allowed here: {', '.join(allowed)}" if allowed else msg + fix
    elif kind == "missing":
        msg = f"{msg}. Fix: add it"
    elif kind in _BOUNDS:
        ctx = err.get("ctx") or {}
        bound = next((ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx), "?")
        msg = f"{msg} (got {_short(value)}). Fix: use a value {_BOUNDS[kind]} {_number(bound)}"
    elif isinstance(value, str | int | float | bool) and kind != "value_error":
        msg = f"{msg} (got {_short(value)})"
    return provenance.of(loc), dotted(loc), msg


def validation_error(
    e: ValidationError, data: dict[str, Any], provenance: Provenance
) -> ScenarioError:
    """Turn pydantic's errors into one ``ScenarioError`` (at most five lines)."""
    problems: list[Problem] = []
    for err in e.errors():
        file, field, msg = _problem(err, data, provenance)
        if problems and problems[-1][:2] == (file, field):  # union members: one line
            problems[-1] = (file, field, f"{problems[-1][2]}; or {msg}")
        else:
            problems.append((file, field, msg))
    more = len(problems) - MAX_PROBLEMS
    problems = problems[:MAX_PROBLEMS]
    if more > 0:
        f, fld, m = problems[-1]
        problems[-1] = (f, fld, f"{m} (and {more} more problems)")
    return ScenarioError(*problems[0], problems=problems)
