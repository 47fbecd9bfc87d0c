"""The documentation (README.md and docs/*.md) against the repository and the code.

Checked, each failure naming the file, the line and the problem:

(a) Links. Every relative link in README.md and docs/*.md, markdown links ``[text](target)`` and
    images ``![alt](target)`` outside code, resolves to an existing file or folder, and a
    ``#anchor`` (``page.md#anchor`` or ``#anchor`` on the same page) names a heading of that page by
    GitHub's rule: lower case, punctuation other than ``-`` and ``_`` dropped, spaces to ``-``, a
    repeated heading gets ``-1``, ``-2``, ... Every path in the README's "Layout" block exists.

(b) Names. The docs list each kind of name in tables, one kind per table, recognised by its first
    header cell; the first column holds the names in backticks. Where each list lives (other tables
    with the same header cell are held to the same set):

    - ``stage``: README.md, "The pipeline" -- the stages of dvc.yaml;
    - ``preset``: docs/recipes-and-data.md, "Model presets" -- ``pir.config.PRESETS``;
    - ``recipe``: docs/recipes-and-data.md, "Recipes" -- ``pir.pipeline.params.recipe_names()``;
    - ``command``: README.md, "The pir command" -- the ``if command == "..."`` dispatch of
      src/pir_tools/cli.py (a row's ``pir X ...`` lists X).

    In prose and code the same names are held to the code: ``pir X`` in code (comments aside) is a
    command of the dispatch, ``stages/X.py`` a script dvc.yaml runs, ``model.preset=X`` /
    ``preset: X`` / ``--preset X`` and every ``clip-*`` name a preset, ``recipe=X`` / ``recipe: X`` /
    ``pir recipe show X`` a recipe, and "runs / has / holds / of N stages" (N a number word) counts
    dvc.yaml's stages.

(c) Size. README.md has at most 250 lines, and every page of docs/ over 150 lines opens with a
    table of contents: before its first ``##`` heading, a link to every ``##`` heading of the page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
TOC_FROM_LINES = 150

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10, "eleven": 11, "twelve": 12}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def prose_lines(lines: list[str]) -> list[tuple[int, str, bool]]:
    """(line number, text, inside a fenced code block) for every line."""
    out, fenced = [], False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
            out.append((number, line, True))
            continue
        out.append((number, line, fenced))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "-_ ")
    return text.replace(" ", "-")


def headings(path: Path) -> list[tuple[int, int, str]]:
    """(line number, level, text) of every heading outside code blocks."""
    found = []
    for number, line, fenced in prose_lines(read_lines(path)):
        match = None if fenced else HEADING.match(line)
        if match:
            found.append((number, len(match.group(1)), match.group(2)))
    return found


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, _, text in headings(path):
        base = slug(text)
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code."""
    out = []
    for number, line, fenced in prose_lines(read_lines(path)):
        if fenced:
            continue
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            out.append((number, match.group(1)))
    return out


def tables(path: Path) -> list[tuple[int, list[str], list[tuple[int, list[str]]]]]:
    """(line number, header cells, [(line number, cells)]) of every table outside code blocks."""
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    found, current = [], None
    for number, line, fenced in prose_lines(read_lines(path)):
        is_row = not fenced and line.lstrip().startswith("|")
        if not is_row:
            current = None
            continue
        if current is None:
            current = (number, cells(line), [])
            found.append(current)
        elif not re.fullmatch(r"[\s|:-]+", line):
            current[2].append((number, cells(line)))
    return found


def dvc_stages() -> list[str]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def cli_commands() -> set[str]:
    text = (ROOT / "src" / "pir_tools" / "cli.py").read_text()
    return set(re.findall(r'if command == "([a-z-]+)"', text))


def presets() -> set[str]:
    from pir.config import PRESETS

    return set(PRESETS)


def recipes() -> set[str]:
    from pir.pipeline.params import recipe_names

    return set(recipe_names())


KINDS = {  # header cell -> (the code's names, the page that must hold such a table)
    "stage": (lambda: set(dvc_stages()), "README.md"),
    "preset": (presets, "docs/recipes-and-data.md"),
    "recipe": (recipes, "docs/recipes-and-data.md"),
    "command": (cli_commands, "README.md"),
}


def first_name(cell: str, kind: str) -> str | None:
    """The name a table row lists: the first backticked word, and for commands the word after `pir`."""
    match = re.search(r"`([^`]+)`", cell)
    if not match:
        return None
    words = match.group(1).split()
    if kind == "command":
        return words[1] if len(words) > 1 and words[0] == "pir" else None
    return words[0]


# ---------------------------------------------------------------------------------------------- (a)


def test_relative_links_resolve():
    problems = []
    for page in PAGES:
        for number, target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):    # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            goal = page if not file_part else (page.parent / file_part).resolve()
            where = f"{rel(page)}:{number}"
            if not goal.exists():
                problems.append(f"{where}: link target {target!r} does not exist")
                continue
            if anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                problems.append(f"{where}: link {target!r}: no heading in {rel(goal)} has the anchor #{anchor}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_layout_paths_exist():
    lines = read_lines(README)
    start = next(number for number, level, text in headings(README) if text == "Layout")
    problems, fenced = [], False
    for number, line, in_code in prose_lines(lines)[start:]:
        if FENCE.match(line):
            if fenced:
                break
            fenced = True
            continue
        if not in_code or not line.strip() or line.startswith(" "):
            continue
        for path in re.split(r"\s{3,}", line.strip())[0].split():
            if not (ROOT / path).exists() and path not in ("data/",):    # data/ is made by dvc repro
                problems.append(f"README.md:{number}: the layout lists {path}, which does not exist")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------- (b)


@pytest.mark.parametrize("kind", list(KINDS))
def test_listed_names_match_the_code(kind):
    expected_fn, home = KINDS[kind]
    expected = expected_fn()
    problems, homes = [], []
    for page in PAGES:
        for number, header, rows in tables(page):
            if header[0].strip("`* ").lower() != kind:
                continue
            if rel(page) == home:
                homes.append(number)
            listed = {}
            for row_number, cells in rows:
                name = first_name(cells[0], kind)
                if name is None:
                    problems.append(f"{rel(page)}:{row_number}: a {kind} table row with no `name` in its first cell")
                else:
                    listed.setdefault(name, row_number)
            missing, unknown = expected - set(listed), set(listed) - expected
            for name in sorted(unknown):
                problems.append(f"{rel(page)}:{listed[name]}: {kind} {name!r} is listed but the code has no such "
                                f"{kind} (the code has: {', '.join(sorted(expected))})")
            if missing:
                problems.append(f"{rel(page)}:{number}: the {kind} table lacks {', '.join(sorted(missing))}, "
                                f"which the code has")
    if not homes:
        problems.append(f"{home}: no table whose first header cell is `{kind}` (the list of {kind}s lives there)")
    assert not problems, f"{kind} names:\n" + "\n".join(problems)


def code_fragments(page: Path):
    """(line number, text) of every code span and every line of a code block (its comments cut)."""
    for number, line, fenced in prose_lines(read_lines(page)):
        if fenced:
            if not FENCE.match(line) and not line.lstrip().startswith("#"):
                yield number, line.split(" # ", 1)[0]
        else:
            for match in CODE_SPAN.finditer(line):
                yield number, match.group(2)


def test_names_in_prose_and_code_match_the_code():
    commands, known_presets, known_recipes = cli_commands(), presets(), recipes()
    stages = dvc_stages()
    problems = []
    for page in PAGES:
        for number, text in code_fragments(page):
            where = f"{rel(page)}:{number}"
            for word in re.findall(r"(?:^|[\s;(&|])pir ([a-z][a-z_-]*)", text):
                if word not in commands:
                    problems.append(f"{where}: `pir {word}` is not a pir command ({', '.join(sorted(commands))})")
            for name in re.findall(r"stages/([a-z_]+)\.py", text):
                if name not in stages:
                    problems.append(f"{where}: stages/{name}.py is not a script dvc.yaml runs ({', '.join(stages)})")
            for name in re.findall(r"(?:model\.preset[=:]\s*|preset:\s*|--preset[ =])([a-z][a-z0-9-]*)", text):
                if name not in known_presets:
                    problems.append(f"{where}: preset {name!r} is not in PRESETS ({', '.join(sorted(known_presets))})")
            for name in re.findall(r"(?:\brecipe[=:]\s*|pir recipe show )([a-z][a-z0-9_-]*)(?![\w.=])", text):
                if name not in known_recipes:
                    problems.append(f"{where}: recipe {name!r} is not a recipe ({', '.join(sorted(known_recipes))})")
        for number, line, fenced in prose_lines(read_lines(page)):
            where = f"{rel(page)}:{number}"
            for name in re.findall(r"\bclip-[a-z0-9]+\b", re.sub(r"\]\([^)]*\)", "]", line)):
                if name not in known_presets and name != "clip-family":      # docs/clip-family.md
                    problems.append(f"{where}: {name!r} is not in PRESETS ({', '.join(sorted(known_presets))})")
            if fenced:
                continue
            for word in re.findall(r"\b(?:runs|has|holds|of) (\w+) (?:DVC )?stages\b", line, flags=re.IGNORECASE):
                count = NUMBER_WORDS.get(word.lower())
                if count is not None and count != len(stages):
                    problems.append(f"{where}: says {word} stages; dvc.yaml has {len(stages)}")
    assert not problems, "names that do not match the code:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------- (c)


def test_readme_is_short():
    count = len(read_lines(README))
    assert count <= README_MAX_LINES, f"README.md: {count} lines, above {README_MAX_LINES}: move detail into docs/"


def test_long_pages_open_with_a_table_of_contents():
    problems = []
    for page in PAGES[1:]:                                          # docs/*.md; GitHub outlines the README
        lines = read_lines(page)
        if len(lines) <= TOC_FROM_LINES:
            continue
        sections = [(number, text) for number, level, text in headings(page) if level == 2]
        if not sections:
            problems.append(f"{rel(page)}:1: {len(lines)} lines and no ## sections")
            continue
        before = {target[1:] for number, target in links(page) if number < sections[0][0] and target.startswith("#")}
        for number, text in sections:
            if slug(text) not in before:
                problems.append(f"{rel(page)}:{number}: section {text!r} is missing from the table of contents "
                                f"(links to #{slug(text)} before line {sections[0][0]})")
    assert not problems, f"pages over {TOC_FROM_LINES} lines need a table of contents:\n" + "\n".join(problems)
