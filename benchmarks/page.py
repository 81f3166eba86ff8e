"""The page docs/performance.md, rendered from ``benchmarks/templates/`` and the figures the
benchmarks return.

A benchmark module ``benchmarks/bench_NAME.py`` contributes one section: its
``run(quick: bool = False) -> Dict[str, str]`` returns the figures (markdown tables made with
:func:`benchmarks.common.table`, formatted numbers) that fill the ``$name`` placeholders of
``benchmarks/templates/bench_NAME.md``. Sections follow the order of the module names. Adding
a benchmark adds those two files and touches nothing else.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Mapping, Sequence

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_TEMPLATE = "performance.md"


def render(template: str, figures: Mapping[str, str], what: str) -> str:
    """``template`` with its placeholders filled from ``figures``; a placeholder without a
    figure, or a figure without a placeholder, is an error (a figure is never dropped)."""
    text = string.Template(template)
    wanted = {m.group("named") or m.group("braced") for m in text.pattern.finditer(template)
              if m.group("named") or m.group("braced")}
    missing, unused = sorted(wanted - set(figures)), sorted(set(figures) - wanted)
    if missing or unused:
        raise ValueError(f"{what}: no figure for {missing}, no placeholder for {unused}")
    return text.substitute(figures).rstrip("\n") + "\n"


def section(module: str, figures: Mapping[str, str], templates: Path = TEMPLATES) -> str:
    """The section of benchmark ``module`` (e.g. ``"bench_decorators"``)."""
    path = templates / f"{module}.md"
    return render(path.read_text(encoding="utf-8"), figures, str(path))


def page(machine: str, sections: Sequence[str], templates: Path = TEMPLATES) -> str:
    """The whole page: the header template, then each section."""
    path = templates / PAGE_TEMPLATE
    header = render(path.read_text(encoding="utf-8"), {"machine": machine}, str(path))
    return "\n".join([header, *sections])
