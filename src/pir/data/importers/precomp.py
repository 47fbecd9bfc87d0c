"""AMFMN precomp text files ``{train,val,test}_filename.txt`` + ``_caps.txt`` (either k captions per
listed file, or one file line per caption line)."""

from __future__ import annotations

from pathlib import Path

from pir.data.importers.common import RawImage, inside_path, parse_rows, read_lines


def read_precomp(folder: Path, split: str, problems: list[str]) -> list[RawImage]:
    """AMFMN ``<split>_filename.txt`` + ``<split>_caps.txt``.

    Train lists each file once with k consecutive captions; test repeats each
    file once per caption line. Both are handled: equal line counts mean aligned
    lines (grouped by file), otherwise captions must be a multiple of files.
    """
    names_path, caps_path = folder / f"{split}_filename.txt", folder / f"{split}_caps.txt"
    names_source = f"{folder.name}/{names_path.name}"
    before = len(problems)
    lines = parse_rows(read_lines(names_path), names_source,
                       lambda line: line.strip() and inside_path(line.strip(), "filename"), problems, "line", 1)
    if len(problems) > before:
        return []   # the import stops on these; pairing captions with a partial list would only add noise
    names = [name for _, name in lines if name]
    caps = [c.strip() for c in read_lines(caps_path)]
    while caps and not caps[-1]:
        caps.pop()   # a trailing newline is not an empty caption
    source = f"{folder.name}/{split}_caps.txt"
    if len(caps) == len(names):
        pairs = zip(names, caps)
    elif names and len(caps) % len(names) == 0:
        k = len(caps) // len(names)
        pairs = ((names[i // k], c) for i, c in enumerate(caps))
    else:
        raise ValueError(f"{caps_path}: {len(caps)} captions do not match the {len(names)} files of {names_path.name}")
    lineno = {name: number for number, name in reversed(lines) if name}   # first line naming each file
    images: dict[str, RawImage] = {}
    for name, caption in pairs:
        file = Path(name).name
        if file not in images:
            images[file] = RawImage(file, "train" if split == "train" else split, [], source, name,
                                    hint_at=f"{names_source}: line {lineno[name]}: filename")
        images[file].captions.append(caption)
    return list(images.values())
