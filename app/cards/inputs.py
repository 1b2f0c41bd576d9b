"""Finding the card files in the input folders (spec §5.1). Never modifies them."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.cards.errors import CardError
from app.cards.options import natural_sorted

# OS clutter the original deletes; we leave it alone and just look past it.
_JUNK = {".ds_store", "thumbs.db", "desktop.ini", "icon\r"}


def _ignored(name: str) -> bool:
    return name.lower() in _JUNK or name.startswith(".") or name.lower().endswith(".md")


def list_files(folder: str | os.PathLike, *, recursive: bool, option: str) -> dict[str, Path]:
    """Card files under `folder` keyed by POSIX relative path.

    Hidden files, `.md` notes and OS junk are skipped; so is anything that is not a
    regular file (a FIFO or device would block or never end). Directory symlinks are
    not followed, which rules out loops.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CardError(f"{option}: {os.fspath(folder)!r} is not a folder")
    found: dict[str, Path] = {}
    pending = [root]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            raise CardError(f"{option}: cannot read folder {os.fspath(current)!r}: {exc.strerror}") from None
        for entry in entries:
            if _ignored(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append(Path(entry.path))
                continue
            try:
                mode = os.stat(entry.path).st_mode
            except OSError:
                continue  # dangling symlink
            if stat.S_ISREG(mode):
                found[Path(entry.path).relative_to(root).as_posix()] = Path(entry.path)
    return found


@dataclass
class CardFiles:
    singles: list[str]            # relative paths of single-sided fronts, in order
    doubles: list[str]            # relative paths of double-sided cards, in order
    fronts: dict[str, Path]
    double_backs: dict[str, Path]
    back: Path | None             # the common back; None = default back


def collect(*, front_dir, back_dir=None, double_sided_dir=None, back_file=None,
            only_fronts=False) -> CardFiles:
    fronts = list_files(front_dir, recursive=True, option="front_dir")
    if not fronts:
        raise CardError(f"front_dir: no card images found in {os.fspath(front_dir)!r}")

    double_backs: dict[str, Path] = {}
    if double_sided_dir is not None:
        double_backs = list_files(double_sided_dir, recursive=True, option="double_sided_dir")
    if only_fronts and double_backs:
        raise CardError("only_fronts cannot be combined with double-sided cards; "
                        "empty double_sided_dir or drop only_fronts")
    unmatched = sorted(set(double_backs) - set(fronts))
    if unmatched:
        raise CardError(
            f"double_sided_dir: no front with the same name for {_names(unmatched)}; "
            "each back must have a front at the same relative path in front_dir"
        )

    back = None if only_fronts else _choose_back(back_dir, back_file)
    doubles = natural_sorted(double_backs)
    singles = natural_sorted(set(fronts) - set(double_backs))
    return CardFiles(singles, doubles, fronts, double_backs, back)


def _choose_back(back_dir, back_file) -> Path | None:
    if back_dir is None:
        if back_file is None:
            return None
        path = Path(back_file)
        if not path.is_file():
            raise CardError(f"back_file: {os.fspath(back_file)!r} is not a file")
        return path
    backs = list_files(back_dir, recursive=False, option="back_dir")
    if back_file is None:
        if len(backs) > 1:
            raise CardError(
                f"back_dir holds {len(backs)} images ({_names(natural_sorted(backs))}); "
                "choose one with back_file"
            )
        return next(iter(backs.values()), None)
    wanted = Path(back_file)
    for name, path in backs.items():
        if wanted.name == name and (not wanted.is_absolute() or _same(wanted, path)):
            return path
    raise CardError(
        f"back_file {os.fspath(back_file)!r} is not in back_dir; "
        f"choose one of: {_names(natural_sorted(backs)) or '(back_dir is empty)'}"
    )


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
