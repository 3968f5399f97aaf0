"""YAML reading for every file lowbit reads: safe loading, and a mapping key given twice is an error.

YAML itself lets a later key silently replace an earlier one, which turns a typo in a chip or sweep file into a
wrong result instead of an error; lowbit refuses it and names both lines.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from lowbit_core.errors import InputError

__all__ = ["read_yaml"]


@lru_cache(maxsize=1)
def _unique_key_loader() -> type:
    """A safe YAML loader (libyaml's when available) that refuses a mapping key given twice."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                first_line: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may override keys
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        if key in first_line:
                            raise yaml.constructor.ConstructorError(
                                None,
                                None,
                                f"duplicate key {key!r} (first on line {first_line[key]})",
                                key_node.start_mark,
                            )
                        first_line[key] = key_node.start_mark.line + 1
                    except TypeError:  # unhashable: the base constructor reports it
                        continue
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | os.PathLike[str], what: str, *, error: type[InputError] = InputError) -> Any:
    """Parse a YAML file; a missing, unreadable or malformed file, or a mapping key given twice, is a one-line
    ``error`` naming the line.  ``what`` names the file's role in messages, e.g. ``"chip file"``."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{p}: cannot read {what} ({exc})".replace("\n", " ")) from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{p}: malformed YAML: {at}{problem}".replace("\n", " ")) from None
