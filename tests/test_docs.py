"""The README is a front door: short, its links to docs/ resolve, and the long reference is there."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_the_readme_is_short_and_every_relative_link_resolves():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
    for doc in ("how-it-reads", "models", "settings", "performance", "sandbox", "development"):
        assert f"docs/{doc}.md" in readme


def test_the_performance_table_is_printed_once_after_a_whole_sentence():
    text = (ROOT / "docs" / "performance.md").read_text()
    assert text.count("| measure | value | ratio / goal |") == 1
    assert "; `| measure" not in text
