"""The alerts' runbook links and the README's operator guide stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

README = Path(__file__).resolve().parents[2] / "README.md"
GUIDE = ["Installing the service", "Editing a policy", "Reading the dashboard", "Rolling back",
         "Verifying the audit log"]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every heading outside fenced code blocks."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"(#{1,6}) (.+)", line)):
            found.append((len(match.group(1)), match.group(2)))
    return found


def test_every_runbook_url_names_a_readme_heading(config_dir: Path) -> None:
    """Each alert's runbook_url is README.md#anchor, and the README has that heading."""
    anchors = {_slug(text) for _, text in _headings(README.read_text())}
    document = yaml.safe_load((config_dir / "prometheus" / "alerts.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "README.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: README.md has no heading #{anchor}"


def test_the_operator_guide_has_its_sections() -> None:
    """The five sections of the operator guide are level-2 headings of the README."""
    level_two = [text for level, text in _headings(README.read_text()) if level == 2]
    assert [title for title in GUIDE if title not in level_two] == []


def test_links_inside_the_readme_resolve() -> None:
    """Every in-page link of the README points at one of its headings."""
    text = README.read_text()
    anchors = {_slug(heading) for _, heading in _headings(text)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links - anchors == set()
