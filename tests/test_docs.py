"""The documentation: the README stays a front page, and every relative link in it and in the docs resolves.

Links are checked the way GitHub renders them: a relative path from the linking file's folder to an existing
file, and for ``file.md#anchor`` (or ``#anchor``) a heading of that file whose GitHub slug is the anchor.
http(s) and mailto links are not followed. Code blocks and inline code are not scanned.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def markdown_files() -> list[Path]:
    """The README, every page under docs/ and the benchmarks' README."""
    files = [README, *sorted((ROOT / "docs").glob("*.md"))]
    benchmarks = ROOT / "benchmarks" / "README.md"
    if benchmarks.exists():
        files.append(benchmarks)
    return files


def display(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def prose_lines(text: str, strip_code: bool = True) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code removed unless ``strip_code`` is False."""
    lines, in_fence, fence = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if not in_fence:
                in_fence, fence = True, match.group(1)
            elif match.group(1) == fence:
                in_fence = False
            continue
        if not in_fence:
            lines.append((number, INLINE_CODE.sub("", line) if strip_code else line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition."""
    found = []
    for number, line in prose_lines(text):
        found += [(number, target) for target in INLINE_LINK.findall(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            found.append((number, definition.group(1)))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # keeps letters, digits, underscores, hyphens and spaces
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a markdown file: its headings' slugs (repeats numbered as GitHub does) and HTML anchors."""
    text = path.read_text(encoding="utf-8")
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(text, strip_code=False):
        heading = HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            slugs.add(slug if count == 0 else f"{slug}-{count}")
        slugs.update(HTML_ANCHOR.findall(line))
    return slugs


def broken_link(source: Path, target: str) -> str | None:
    """Why a relative link of ``source`` does not resolve, or None when it does (or is external)."""
    if not target or EXTERNAL.match(target):
        return None
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    destination = (source.parent / path_part).resolve() if path_part else source
    if not destination.exists():
        return f"{path_part} does not exist"
    if anchor:
        if destination.is_dir() or destination.suffix.lower() != ".md":
            return None
        if unquote(anchor).lower() not in anchors(destination):
            return f"no heading #{anchor} in {display(destination)}"
    return None


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move details into docs/")


def test_readme_names_both_test_tiers():
    text = README.read_text(encoding="utf-8")
    assert re.search(r"make test(?!-)", text), "the README must name `make test` (the fast tier)"
    assert "make test-all" in text, "the README must name `make test-all` (the full tier)"


def test_relative_links_resolve():
    problems = []
    for source in markdown_files():
        for number, target in links(source.read_text(encoding="utf-8")):
            reason = broken_link(source, target)
            if reason:
                problems.append(f"{display(source)}:{number}: ({target}) {reason}")
    assert not problems, f"{len(problems)} broken link(s):\n" + "\n".join(problems)


def test_the_link_checker_itself(tmp_path: Path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## The `make test` tier: fast!\n\n## Again\n\n## Again\n")
    page.write_text(
        "# Title\n\n"
        "[ok](other.md) [ok](other.md#the-make-test-tier-fast) [ok](#title) [ok](other.md#again-1)\n"
        "![picture](missing.png) [ext](https://example.org/x.md) [mail](mailto:a@b.c)\n"
        "`[not a link](nowhere.md)`\n"
        "```\n[not a link](nowhere.md)\n```\n"
        "[bad anchor](other.md#nope)\n")
    found = [(number, target, broken_link(page, target)) for number, target in links(page.read_text())]
    assert [(n, t) for n, t, why in found if why] == [(4, "missing.png"), (9, "other.md#nope")]
    assert len(found) == 8
