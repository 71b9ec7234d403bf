"""The template tree, filled in for one service.

A plain token substitution, not Jinja: cookiecutter and copier render with Jinja's ``{{ }}``,
which the Helm templates of the tree use themselves, and escaping each of them would make the
chart in the template differ from the service charts it must match (tools/tests/
test_scaffold_template.py checks that it does not). Each file ``<path>.tmpl`` becomes
``<path>`` with the tokens replaced in its path and its text; ``<path>.symlink`` becomes a
symbolic link to the path it holds (a wheel keeps no links, and the service charts share one
values schema through one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath

TEMPLATE = Path(__file__).parent / "template"
TEXT_SUFFIX = ".tmpl"
LINK_SUFFIX = ".symlink"
NAME_TOKEN = "@name@"
# The database range values-prod.yaml allows egress to, 10.20.<n>.0/24: one per service chart.
DATABASE_RANGE = re.compile(r"\b10\.20\.(\d+)\.0/24\b")


def tokens(name: str, root: Path, today: date | None = None) -> dict[str, str]:
    """What each token stands for in `name`'s files."""
    return {
        NAME_TOKEN: name,
        "@Name@": name.capitalize(),
        "@subnet@": str(next_database_range(root)),
        "@date@": (today or date.today()).isoformat(),
    }


def next_database_range(root: Path) -> int:
    """The <n> of 10.20.<n>.0/24 after those of the charts there are (an ADJUST value, but two
    services should not start out sharing one)."""
    used = [int(found) for path in root.glob("helm/*/values-prod.yaml")
            for found in DATABASE_RANGE.findall(path.read_text())]
    return max(used, default=0) + 1


def substitute(text: str, values: Mapping[str, str]) -> str:
    for token, value in values.items():
        text = text.replace(token, value)
    return text


@dataclass(frozen=True)
class File:
    """One file of the new service: `path` relative to the repository, and its text (or, for a
    link, where it points)."""

    path: PurePosixPath
    text: str
    link: bool = False


def template_files() -> list[Path]:
    return sorted(path for path in TEMPLATE.rglob("*")
                  if path.is_file() and path.name.endswith((TEXT_SUFFIX, LINK_SUFFIX)))


def files(values: Mapping[str, str]) -> list[File]:
    """Every file of the tree, filled in with `values`."""
    found = []
    for source in template_files():
        relative = source.relative_to(TEMPLATE).as_posix()
        link = relative.endswith(LINK_SUFFIX)
        relative = relative.removesuffix(LINK_SUFFIX if link else TEXT_SUFFIX)
        found.append(File(PurePosixPath(substitute(relative, values)),
                          substitute(source.read_text(), values), link))
    return found


def owned_paths(values: Mapping[str, str]) -> list[PurePosixPath]:
    """The directories and files that belong to the new service alone: in each template path,
    the part up to the first component that carries its name (services/<name>, helm/<name>,
    docs/<name>.md, ...). None may exist before the scaffold writes them."""
    owned = set()
    for source in template_files():
        parts = source.relative_to(TEMPLATE).parts
        first = next((i for i, part in enumerate(parts) if NAME_TOKEN in part), None)
        if first is None:
            raise ValueError(f"{source}: a template path must name the service ({NAME_TOKEN})")
        path = substitute(PurePosixPath(*parts[:first + 1]).as_posix(), values)
        owned.add(PurePosixPath(path.removesuffix(TEXT_SUFFIX).removesuffix(LINK_SUFFIX)))
    return sorted(owned)


def write(root: Path, planned: Iterable[File]) -> list[Path]:
    """Write every file under `root` (creating directories); the paths written."""
    written = []
    for file in planned:
        target = root / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.link:
            target.symlink_to(file.text)
        else:
            target.write_text(file.text)
        written.append(target)
    return written
