"""The documentation's examples run and print what the pages say.

``docs/problem.md`` is a doctest: its ```python blocks hold ``>>>`` sessions whose outputs
are checked. ``docs/solvers.md``'s python blocks are plain code and are executed.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import fedalign as fa

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(\w*)\s*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, source)`` of every ```python block of a markdown page."""
    blocks: list[tuple[int, str]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if current is None:
            if fence and fence.group(1) == "python":
                current, start = [], number + 1
        elif fence:
            blocks.append((start, "\n".join(current) + "\n"))
            current = None
        else:
            current.append(line)
    assert current is None, f"unclosed ```python block from line {start}"
    return blocks


class MarkdownParser(doctest.DocTestParser):
    """Doctest parser that reads only the ```python blocks of a markdown page.

    Every other line is blanked (line numbers in failure reports stay those of the page),
    so a closing fence is never taken for expected output.
    """

    def parse(self, string: str, name: str = "<string>") -> list[str | doctest.Example]:
        lines = [""] * len(string.splitlines())
        for start, source in python_blocks(string):
            for k, line in enumerate(source.splitlines()):
                lines[start - 1 + k] = line
        return super().parse("\n".join(lines) + "\n", name)


def test_python_blocks_finds_fenced_code() -> None:
    page = "text\n```python\n>>> 1 + 1\n2\n```\n```\nnot python\n```\n```python\nx = 1\n```\n"
    assert python_blocks(page) == [(3, ">>> 1 + 1\n2\n"), (10, "x = 1\n")]


def test_markdown_parser_catches_a_wrong_output() -> None:
    """The doctest machinery really compares: a page with a false output fails."""
    page = "```python\n>>> 1 + 1\n3\n```\n"
    test = MarkdownParser().get_doctest(page, {}, "page", "page.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda _: None)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=1, attempted=1)


def test_problem_page_doctest() -> None:
    if "cpsat" not in fa.available_solvers():
        pytest.skip("the page's last example uses cpsat (ortools)")
    results = doctest.testfile(
        str(DOCS / "problem.md"),
        module_relative=False,
        parser=MarkdownParser(),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert results.attempted > 20
    assert results.failed == 0, "docs/problem.md: see the doctest report above"


def test_solvers_page_code_runs() -> None:
    blocks = python_blocks((DOCS / "solvers.md").read_text(encoding="utf-8"))
    assert blocks, "docs/solvers.md has no python block"
    namespace: dict[str, object] = {}
    for start, source in blocks:
        assert ">>>" not in source, f"solvers.md line {start}: a doctest, not plain code"
        exec(compile(source, f"docs/solvers.md:{start}", "exec"), namespace)  # noqa: S102
    solution = namespace["solution"]
    assert isinstance(solution, fa.Solution)
    assert solution.to_dict() == {0: [0], 1: [1]}


def test_reliability_page_doctest() -> None:
    results = doctest.testfile(
        str(DOCS / "reliability.md"),
        module_relative=False,
        parser=MarkdownParser(),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert results.attempted > 15
    assert results.failed == 0, "docs/reliability.md: see the doctest report above"
