"""Which files of the build context a Dockerfile target is built from: the part of its cache key
that changes with the repository.

Only the stages the target needs count (its FROM chain and COPY --from), and of their COPY
sources only what .dockerignore lets into the context: so a change in operator/ gives the
operator and serving images new keys, and leaves mlflow-server's alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    needs: set[str] = field(default_factory=set)  # stages it copies from
    sources: list[str] = field(default_factory=list)  # COPY/ADD sources in the context


def instructions(text: str) -> list[list[str]]:
    """Each instruction as words, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not _comment(ln)))
    return [line.split() for line in joined.splitlines() if line.strip()]


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def stages(text: str) -> dict[str, Stage]:
    """The stages by name (unnamed ones by their index), in order."""
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for words in instructions(text):
        keyword = words[0].upper()
        if keyword == "FROM":
            current = Stage(base=words[1])
            name = words[3] if len(words) > 3 and words[2].upper() == "AS" else str(len(found))
            found[name] = current
        elif keyword in {"COPY", "ADD"} and current is not None:
            flags = [word for word in words[1:] if word.startswith("--")]
            paths = [word for word in words[1:] if not word.startswith("--")]
            copied_from = [flag.split("=", 1)[1] for flag in flags if flag.startswith("--from=")]
            if copied_from:
                current.needs.update(copied_from)
            else:
                current.sources.extend(paths[:-1])
    return found


def needed_stages(all_stages: dict[str, Stage], target: str) -> list[str]:
    """target and every stage it is built from, directly or not."""
    seen: list[str] = []
    todo = [target]
    while todo:
        name = todo.pop()
        if name in seen or name not in all_stages:
            continue  # an image from outside (a base image), not a stage
        seen.append(name)
        stage = all_stages[name]
        todo += [stage.base, *stage.needs]
    return seen


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regular expression."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", glob.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps this path out; a pattern matches a path or a directory above it,
    and the last matching pattern decides (``!`` lets it back in)."""
    prefixes = [relative]
    while "/" in prefixes[-1]:
        prefixes.append(prefixes[-1].rsplit("/", 1)[0])
    excluded = False
    for line in patterns:
        negated = line.startswith("!")
        regex = _pattern(line.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def context_files(dockerfile: Path, target: str) -> list[Path]:
    """The files of the context (the Dockerfile's directory) that target copies into itself."""
    root = dockerfile.parent
    ignore_file = root / ".dockerignore"
    patterns = []
    if ignore_file.exists():
        lines = (line.strip() for line in ignore_file.read_text().splitlines())
        patterns = [line for line in lines if line and not line.startswith("#")]
    all_stages = stages(dockerfile.read_text())
    files: set[Path] = set()
    for name in needed_stages(all_stages, target):
        for source in all_stages[name].sources:
            for match in root.glob(source.rstrip("/")):
                candidates = match.rglob("*") if match.is_dir() else [match]
                files.update(
                    candidate
                    for candidate in candidates
                    if candidate.is_file()
                    and not ignored(candidate.relative_to(root).as_posix(), patterns)
                )
    return sorted(files)
