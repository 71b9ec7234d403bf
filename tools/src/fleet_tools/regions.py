"""Generated regions inside hand-written files.

A region is the lines between two marker comments, in whatever comment syntax the file has::

    resources:
      - namespace.yaml
      # BEGIN generated: services (fleetctl registry sync)
      - inventory
      # END generated: services

`replace` swaps what is between the markers for new content, indented like the BEGIN marker,
and leaves every other line as it was; the markers stay, so the next run finds the region again.
Indenting by the marker keeps a template free of where its region sits (a YAML list at any depth,
a shell variable at the top).
"""

from __future__ import annotations

import re

GENERATOR = "fleetctl registry sync"


class RegionError(Exception):
    """A file lacks a region's markers, or has them twice or out of order."""


def begin_marker(name: str) -> str:
    return f"BEGIN generated: {name} ({GENERATOR})"


def end_marker(name: str) -> str:
    return f"END generated: {name}"


def _marker_lines(lines: list[str], marker: str) -> list[int]:
    # The END marker of "a" must not match a region named "a b": the name ends the marker text
    # or is followed by the comment's own closing (" */}}") or the generator note.
    pattern = re.compile(re.escape(marker) + r"(?![\w-])")
    return [i for i, line in enumerate(lines) if pattern.search(line)]


def replace(text: str, name: str, content: str) -> str:
    """`text` with region `name`'s lines replaced by `content` (indented like its marker)."""
    lines = text.splitlines(keepends=True)
    begins = _marker_lines(lines, begin_marker(name))
    ends = _marker_lines(lines, end_marker(name))
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise RegionError(f"needs one '{begin_marker(name)}' line followed by one "
                          f"'{end_marker(name)}' line")
    begin, end = begins[0], ends[0]
    indent = lines[begin][:len(lines[begin]) - len(lines[begin].lstrip())]
    body = [f"{indent}{line}\n" if line else "\n" for line in content.splitlines()]
    return "".join(lines[:begin + 1] + body + lines[end:])
