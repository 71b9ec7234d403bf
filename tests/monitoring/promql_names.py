"""The metric names a PromQL expression reads.

Enough of PromQL's lexical rules to tell metric names from everything else: string literals,
label matchers `{...}`, range and subquery brackets `[...]`, the label lists of
`by/without/on/ignoring/group_left/group_right (...)`, functions and aggregations (a name
followed by `(`), keywords, numbers and durations, and Grafana's `$variables` and
`label_values(query, label)`. An expression it cannot make sense of (unbalanced brackets) is an
error, never an empty answer. The module name is unique on purpose: test directories without
__init__.py share one import namespace.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*|0x[0-9a-fA-F]+|[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"\blabel_values\s*\(")


def _drop_bracketed(text: str, opening: str, closing: str) -> str:
    out = []
    depth = 0
    for char in text:
        if char == opening:
            depth += 1
            if depth == 1:
                out.append(" ")
            continue
        if char == closing:
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {closing!r} in {text!r}")
            continue
        if depth == 0:
            out.append(char)
    if depth:
        raise ValueError(f"unbalanced {opening!r} in {text!r}")
    return "".join(out)


def _unwrap_label_values(text: str) -> str:
    """Grafana's `label_values(query, label)`: the query reads metrics, the label is a name."""
    while (match := _LABEL_VALUES.search(text)) is not None:
        start = match.end()
        depth, index, comma = 1, start, None
        while depth:
            if index >= len(text):
                raise ValueError(f"unbalanced label_values( in {text!r}")
            char = text[index]
            depth += {"(": 1, ")": -1}.get(char, 0)
            if char == "," and depth == 1:
                comma = index
            index += 1
        inner = text[start:comma if comma is not None else index - 1]
        # label_values(label) alone reads no metric.
        text = text[:match.start()] + (f"({inner})" if comma is not None else " ") + text[index:]
    return text


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub(" ", expr)
    text = _VARIABLE.sub(" 1 ", text)
    text = _unwrap_label_values(text)
    text = _drop_bracketed(text, "{", "}")
    text = _drop_bracketed(text, "[", "]")
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token[0].isdigit() or token.lower() in KEYWORDS:
            continue
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(token)
    return names
