"""Reading a user's folder safely: every file found stays inside the folder (links included), class folders
are listed in a fixed order, and image files open or fail with one DataError that names them.

Shared by the folder-based data sets (imagenet, imagefolder) and the event sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from realspike_cli.core.errors import DataError
from realspike_cli.core.limits import MAX_CLASSES  # noqa: F401  (re-exported: npz and the folder readers use it)

# torchvision's ImageFolder extensions (IMG_EXTENSIONS), matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def one_line(error: BaseException) -> str:
    """An exception as `Type: message` on one line, for DataErrors that wrap a reader's failure."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def real_root(root: Path, title: str) -> Path:
    """The data folder with its links resolved: what every file read from it must stay inside."""
    try:
        return root.resolve(strict=True)
    except OSError as error:
        raise DataError(f"{title}: cannot open the data folder {root} ({one_line(error)})") from None


def inside(path: Path, root: Path, title: str) -> Path:
    """`path` resolved (links followed); a DataError when it lies outside `root` (from `real_root`)."""
    try:
        real = path.resolve(strict=True)
    except OSError as error:  # a broken link, a loop of links, or no permission
        raise DataError(f"{title}: cannot open {path} ({one_line(error)})") from None
    if real != root and root not in real.parents:
        raise DataError(f"{title}: {path} links outside the data folder {root} (to {real}); refusing to read it")
    return real


def _check_name(name: str, where: Path, title: str) -> None:
    if not name.isprintable():
        raise DataError(f"{title}: the name {name!r} in {where} holds control characters; rename it")


def _visible_entries(folder: Path, root: Path, title: str) -> list[os.DirEntry]:
    """`folder`'s entries sorted by name, hidden ones skipped; a link that leaves `root` is refused."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise DataError(f"{title}: cannot list {folder} ({one_line(error)})") from None
    visible = [e for e in entries if not e.name.startswith(".")]
    for entry in visible:
        if entry.is_symlink():
            inside(Path(entry.path), root, title)
    return visible


def class_folders(split_dir: Path, root: Path, title: str) -> list[str]:
    """The sorted names of the class folders directly in `split_dir` (hidden ones skipped)."""
    names = []
    for entry in _visible_entries(split_dir, root, title):
        if entry.is_dir():
            _check_name(entry.name, split_dir, title)
            names.append(entry.name)
    if len(names) > MAX_CLASSES:
        raise DataError(f"{title}: {split_dir} holds {len(names)} class folders, more than {MAX_CLASSES}; "
                        "does --data-dir point at the folder that holds the class folders?")
    return names


def files_under(folder: Path, root: Path, title: str, suffixes: tuple[str, ...]) -> list[Path]:
    """Files with one of `suffixes` in `folder` and its subfolders, sorted; links are followed only while they
    stay inside `root`, and a folder reached twice (a link loop) is read once."""
    found: list[Path] = []
    seen: set[Path] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        real = inside(current, root, title)
        if real in seen:
            continue
        seen.add(real)
        for entry in _visible_entries(current, root, title):
            path = Path(entry.path)
            if entry.is_dir():
                stack.append(path)
            elif entry.is_file() and entry.name.lower().endswith(suffixes):  # no FIFOs or devices: they block
                _check_name(entry.name, current, title)
                found.append(path)
    return sorted(found)


def labelled_files(split_dir: Path, root: Path, title: str, suffixes: tuple[str, ...] = IMAGE_EXTENSIONS,
                   classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(file, class index)]) of a class-per-folder split; every class must hold a file.

    `classes`: the names the split must have (e.g. the training split's), in their order.
    """
    if not split_dir.is_dir():
        raise DataError(f"{title}: {split_dir} is not a folder")
    found = class_folders(split_dir, root, title)
    if not found:
        raise DataError(f"{title}: {split_dir} holds no class folders (one folder of files per class)")
    if classes is not None and found != classes:
        odd = sorted(set(found) ^ set(classes))[0]
        listed = ", ".join(classes[:3]) + (", …" if len(classes) > 3 else "")
        raise DataError(f"{title}: {split_dir} does not hold the expected class folders ({listed}): {odd!r} is "
                        f"{'extra' if odd in found else 'missing'}")
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(found):
        files = files_under(split_dir / name, root, title, suffixes)
        if not files:
            kinds = "/".join(s.lstrip(".") for s in suffixes[:4])
            raise DataError(f"{title}: class folder {split_dir / name} holds no {kinds} files")
        samples += [(str(f), index) for f in files]
    return found, samples


def open_image(path: str, title: str) -> Any:
    """The image at `path`, decoded (PIL); a damaged, foreign or oversized file is a DataError naming it."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()
            return image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL reports truncation and unknown formats as OSError, some corrupt headers as SyntaxError
        raise DataError(f"{title} image {path} is unreadable ({one_line(error)})") from None


def image_header(path: str, title: str) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (height, width)) from the file's header alone."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            return image.mode, (height, width)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{title} image {path} is unreadable ({one_line(error)})") from None


class ImageFiles(Dataset):
    """Labelled image files; yields (transform(read(path)), label). `read` and `transform` are module-level
    callables (or partials of them), so the set pickles for DataLoader workers."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], read: Callable[[str], Any],
                 transform: Callable[[Any], Any]) -> None:
        self.samples, self.classes, self.read, self.transform = samples, classes, read, transform
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, label = self.samples[i]
        return self.transform(self.read(path)), label
