"""Stage 1 of 7: scenario file (+ what-if patches, + ``--set`` overrides) -> ``Scenario``.

A file is plain YAML read with ``yaml.safe_load`` (tags such as ``!!python/object`` are
rejected). A what-if file names a ``base`` file (relative to itself) and a ``patch`` that is
deep-merged onto it: mappings merge key by key, lists of mappings that all carry a ``name``
merge item by item by name (new names are appended), anything else replaces. Overrides
``dotted.path=value`` are applied last; list items are addressed by name or index.
Relative ``*_file``/``*_path``/``*_dir`` values are made absolute against the file that set
them. Every problem becomes a ``ScenarioError`` naming the file that set the field, the
dotted field path and what is allowed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

import yaml
from pydantic import ValidationError

from simulator.diagnostics import (
    Loc,
    Provenance,
    ScenarioError,
    default_container,
    dotted,
    find_item,
    item_key,
    validation_error,
)
from simulator.scenario import Scenario

__all__ = ["ScenarioError", "dump_scenario", "load_scenario"]

OVERRIDES = "--set"
WHATIF_KEYS = ("base", "patch", "name", "description")
PATH_SUFFIXES = ("_file", "_path", "_dir")
Raw = dict[str, Any]


# -- reading files ---------------------------------------------------------------------------
def _display(path: Path | str) -> str:
    """Show a path as the user would type it: relative to the working directory if inside it."""
    p = Path(path)
    try:
        rel = os.path.relpath(p)
    except ValueError:  # another drive
        return str(p)
    return rel if not rel.startswith("..") else str(p)


def _read_yaml(path: Path) -> Raw:
    """Read one YAML mapping safely; every failure is a ``ScenarioError`` with line and column."""
    name = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(name, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(name, "", f"cannot read the file: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        raise _tag_error(name, text, e) from None
    except yaml.MarkedYAMLError as e:
        where = _mark(e.problem_mark or e.context_mark)
        raise ScenarioError(name, "", f"malformed YAML{where}: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(name, "", f"malformed YAML: {e}") from None
    if data is None:
        raise ScenarioError(name, "", "the file is empty; a scenario is a YAML mapping")
    if not isinstance(data, dict):
        raise ScenarioError(name, "", f"a scenario is a YAML mapping, got {type(data).__name__}")
    _check_duplicates(yaml.compose(text, Loader=yaml.SafeLoader), name)
    return data


def _check_duplicates(node: yaml.Node | None, name: str, loc: Loc = ()) -> None:
    """YAML silently keeps the last of two equal keys; a scenario file may not repeat one."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = str(getattr(k, "value", ""))
            if key in seen and key != "<<":
                raise ScenarioError(
                    name, dotted(loc + (key,)),
                    f"the key appears twice in one mapping{_mark(k.start_mark)}. Fix: keep one",
                )
            seen.add(key)
            _check_duplicates(v, name, loc + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicates(v, name, loc + (i,))


def _mark(mark: yaml.Mark | None) -> str:
    """Say where in the file a YAML mark is."""
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _tag_error(name: str, text: str, e: yaml.constructor.ConstructorError) -> ScenarioError:
    """Explain a tag safe_load refuses (``!!python/...``), naming the field it sits on."""
    mark = e.problem_mark
    field = ""
    if mark is not None:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: constructs nothing
            field = dotted(_node_path(node, mark.index) or ()) if node is not None else ""
        except yaml.YAMLError:
            pass
    problem = str(getattr(e, "problem", "") or e)
    if "constructor for the tag" not in problem:  # e.g. an unhashable key
        return ScenarioError(name, field, f"malformed YAML{_mark(mark)}: {problem}")
    return ScenarioError(
        name, field, f"{problem}{_mark(mark)}. Fix: scenario files are plain YAML; tags such "
        "as !!python/... are not allowed"
    )


def _node_path(node: yaml.Node, index: int, path: Loc = ()) -> Loc | None:
    """Keys leading to the node that starts at character ``index``."""
    if node.start_mark.index == index and path:
        return path
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            found = _node_path(v, index, path + (getattr(k, "value", "?"),))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found = _node_path(v, index, path + (i,))
            if found:
                return found
    return None


def _absolute_paths(node: Any, base_dir: Path) -> Any:
    """Make relative ``*_file``/``*_path``/``*_dir`` strings absolute against ``base_dir``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str) and k.endswith(PATH_SUFFIXES) and isinstance(v, str) and v:
                node[k] = _absolute(v, base_dir)
            else:
                _absolute_paths(v, base_dir)
    elif isinstance(node, list):
        for v in node:
            _absolute_paths(v, base_dir)
    return node


def _absolute(value: str, base_dir: Path) -> str:
    """Make one path absolute against ``base_dir`` (``~`` expanded)."""
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else Path(os.path.normpath(base_dir / p)))


# -- what-if files: base + patch -----------------------------------------------------------------
def _load_tree(path: Path, chain: tuple[Path, ...] = ()) -> tuple[Raw, Provenance]:
    """Return the merged raw mapping of ``path`` and the record of which file set what."""
    path = path.resolve()
    name = _display(path)
    if path in chain:
        cycle = " -> ".join(_display(p) for p in chain + (path,))
        raise ScenarioError(_display(chain[-1]), "base", f"base files form a cycle: {cycle}")
    data = _absolute_paths(_read_yaml(path), path.parent)
    if "base" in data:
        return _apply_whatif(path, data, chain)
    if "patch" in data:
        raise ScenarioError(name, "patch", "a patch needs a 'base' file to apply to. Fix: add "
                            "'base: <scenario file>' or move the fields to the top level")
    return data, Provenance(name)


def _apply_whatif(path: Path, data: Raw, chain: tuple[Path, ...]) -> tuple[Raw, Provenance]:
    """Load the base of what-if file ``path`` and merge its patch, name and description."""
    name = _display(path)
    for key in data:
        if key not in WHATIF_KEYS:
            raise ScenarioError(
                name, str(key), "a what-if file (one with 'base') takes only "
                f"{', '.join(WHATIF_KEYS)}. Fix: move '{key}' under 'patch:'"
            )
    base, patch = data["base"], data.get("patch") or {}
    if not isinstance(base, str) or not base:
        raise ScenarioError(name, "base", "expected the path of the base scenario file")
    if not isinstance(patch, dict):
        raise ScenarioError(name, "patch", "expected a mapping of the fields to change")
    if not (path.parent / base).is_file():
        raise ScenarioError(name, "base", f"base file not found: {_display(path.parent / base)} "
                            "(paths are relative to the file that names them)")
    merged, prov = _load_tree(path.parent / base, chain + (path,))
    prov.top = name
    _merge(merged, patch, (), prov, name)
    for key in ("name", "description"):
        if key in data:
            merged[key] = data[key]
            prov.add((key,), name)
    return merged, prov


def _merge(into: Raw, patch: Raw, loc: Loc, prov: Provenance, name: str) -> None:
    """Deep-merge ``patch`` into ``into`` in place, recording what ``name`` set."""
    for key, value in patch.items():
        here = loc + (key,)
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value, here, prov, name)
        elif _named_list(old) and _named_list(value):
            _merge_named(old, value, here, prov, name)
        else:
            into[key] = copy.deepcopy(value)
            prov.add(here, name)


def _named_list(x: Any) -> TypeGuard[list[Raw]]:
    """Tell a list whose items are all mappings with a ``name``."""
    return isinstance(x, list) and all(isinstance(i, dict) and "name" in i for i in x)


def _merge_named(into: list[Raw], patch: list[Raw], loc: Loc, prov: Provenance, name: str) -> None:
    """Merge list items by their ``name``; unknown names are appended."""
    index = {item["name"]: i for i, item in enumerate(into)}
    for item in patch:
        key = item_key(item, len(into))
        if item["name"] in index:
            _merge(into[index[item["name"]]], item, loc + (key,), prov, name)
        else:
            into.append(copy.deepcopy(item))
            prov.add(loc + (key,), name)


# -- overrides -----------------------------------------------------------------------------------
def _apply_override(data: Raw, text: str, prov: Provenance) -> None:
    """Apply one ``dotted.path=value`` to the raw tree."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(
            OVERRIDES, text, "expected KEY=VALUE, e.g. cities.Urumqi.tickets_per_day=900"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ScenarioError(OVERRIDES, key, f"the value is not valid YAML: {e}") from None
    segs = key.split(".")
    node: Any = data
    loc: Loc = ()
    for i, seg in enumerate(segs[:-1]):
        node, step = _child(node, seg, loc, segs[: i + 1], key, prov)
        loc += (step,)
    last = segs[-1]
    if isinstance(value, str) and last.endswith(PATH_SUFFIXES):
        value = _absolute(value, Path.cwd())
    elif isinstance(value, dict | list):
        value = _absolute_paths(value, Path.cwd())
    if isinstance(node, list):
        idx = find_item(node, last)
        if idx is None:
            raise ScenarioError(
                OVERRIDES, key, f"no item '{last}' in {dotted(loc)}; {_items(node)}"
            )
        node[idx] = value
        prov.add(loc + (item_key(node[idx], idx),), OVERRIDES)
    elif isinstance(node, dict):
        node[last] = value
        prov.add(loc + (last,), OVERRIDES)
    else:
        raise ScenarioError(OVERRIDES, key, f"{dotted(loc)} is a value, not a mapping or a list")


def _child(
    node: Any, seg: str, loc: Loc, raw_path: list[str], key: str, prov: Provenance
) -> tuple[Any, str | int]:
    """Step into ``seg`` of ``node``; a field the file left out starts as its default."""
    if isinstance(node, dict):
        if node.get(seg) is None:
            block = default_container(raw_path)
            if block is None:
                where = dotted(loc) or "the top level"
                known = ", ".join(map(str, node)) or "nothing"
                what = "is empty" if seg in node else "does not exist"
                raise ScenarioError(OVERRIDES, key, f"'{seg}' {what} in {where} (it has: {known})")
            node[seg] = block
            prov.add(loc + (seg,), OVERRIDES)
        return node[seg], seg
    if isinstance(node, list):
        idx = find_item(node, seg)
        if idx is None:
            raise ScenarioError(OVERRIDES, key, f"no item '{seg}' in {dotted(loc)}; {_items(node)}")
        return node[idx], item_key(node[idx], idx)
    raise ScenarioError(OVERRIDES, key, f"{dotted(loc)} is a value, not a mapping or a list")


def _items(items: list[Any]) -> str:
    """Name the items of a list for a message."""
    names = [str(it["name"]) for it in items if isinstance(it, dict) and "name" in it]
    return f"items are {', '.join(names)}" if names else f"it has {len(items)} items (0-based)"


# -- public API ----------------------------------------------------------------------------------
def load_scenario(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Scenario:
    """Read, merge, override and validate a scenario file.

    Parameters
    ----------
    path
        A scenario file, or a what-if file with ``base`` and ``patch``.
    overrides
        ``dotted.path=value`` strings applied last (list items by name or index; the value
        is parsed as YAML), e.g. ``cities.Urumqi.agent_groups.day.headcount=24``.

    Raises
    ------
    ScenarioError
        Naming the file (or ``--set``) that set the bad field, the field and what is allowed.
    """
    if isinstance(overrides, str):
        overrides = (overrides,)
    data, prov = _load_tree(Path(path))
    for text in overrides:
        _apply_override(data, text, prov)
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, data, prov) from None


def dump_scenario(scenario: Scenario) -> str:
    """Write the resolved scenario as YAML (every default spelled out).

    The text loads back (``load_scenario``) to a model equal to ``scenario``.
    """
    return yaml.safe_dump(
        scenario.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
    )
