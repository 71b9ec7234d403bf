"""`new_service`: the scaffold's steps in order, with what fleetctl prints of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError, say
from fleet_tools.scaffold import names, regenerate, render


def new_service(name: str, root: Path, *, steps: list[regenerate.Step] | None = None,
                report: Callable[[str], None] = say) -> list[Path]:
    """Write service `name` into the checkout at `root` and regenerate what derives from it
    (`steps`, by default `regenerate.steps()`); the files written."""
    started = time.monotonic()
    values = render.tokens(name, root)
    owned = [path.as_posix() for path in render.owned_paths(values)]
    names.check(name, [root / path for path in owned
                       if (root / path).exists() or (root / path).is_symlink()], root)
    written = render.write(root, render.files(values))
    report(f"wrote {len(written)} files of {name}: {', '.join(owned)}")
    regenerate.run(root, regenerate.steps(owned) if steps is None else steps, report)
    report(f"{name} is written, installed and registered in {time.monotonic() - started:.1f} s: "
           f"`make up` runs it with the fleet at /{name}/v1/; docs/{name}.md says what to "
           "make of it")
    return written


def checkout() -> Path:
    """The checkout fleetctl runs from: a scaffold adds to a repository, never to an image."""
    from fleet_tools.config import repository_root

    root = repository_root()
    if root is None:
        raise CommandError("new-service works in a checkout of the repository "
                           "(run .venv/bin/fleetctl there)", 2)
    return root
