"""Fingerprints of data files: what a source records so that a result set changes when its data does.

A file enters a fingerprint by one of `FINGERPRINTS` (a "token" per file: by default its size,
modification time and the sha256 of its first and last 64 KiB); a source's fingerprint is the sha256
over its sorted (relative path, token) lines (`files_fingerprint`), and a source of one file per image
also has a layout-free content key (`CONTENT_KEY`, `Source.provenance()['content']`). `file_sha256`
is the whole-file hash the store's manifests use too.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

def size_token(path: Path) -> str:
    """The file's size in bytes (the 'size' fingerprint)."""
    return str(path.stat().st_size)


#: Bytes hashed at each end of a file by the default ("quick") fingerprint.
EDGE_BYTES = 64 * 1024


def quick_token(path: Path) -> str:
    """size, mtime (ns) and the sha256 of the first and last EDGE_BYTES (the whole file up to 128 KiB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        h.update(f.read(EDGE_BYTES))
        if st.st_size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, st.st_size - EDGE_BYTES))
            h.update(f.read(EDGE_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:32]}"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (the 'sha256' fingerprint; the store's manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: How a file enters a content fingerprint.
#: "quick" (default): size + modification time (ns) + sha256 of the first and last 64 KiB. Sees any
#:   replacement or edit that changes the size, the time, or either end (every byte of a file up to
#:   128 KiB); misses only a same-size edit confined to the middle of a larger file whose modification
#:   time was put back. Copies share it only when they keep modification times (rsync -a, cp -p, tar).
#: "sha256": every byte; exact, copies always share it, reads the whole dataset.
#: "size": one stat; misses any same-size replacement (kept for old result sets).
FINGERPRINTS: dict[str, Callable[[Path], str]] = {"quick": quick_token, "sha256": file_sha256, "size": size_token}
DEFAULT_FINGERPRINT = "quick"


def file_token(path: Path, method: str, cache: dict | None = None) -> str:
    """One file's token by `method` ('missing' when unreadable), memoised in `cache` (a source's own:
    its path fingerprint and its content fingerprint read each file once)."""
    if cache is not None and (method, path) in cache:
        return cache[(method, path)]
    try:
        tok = FINGERPRINTS[method](path)
    except OSError:
        tok = "missing"
    if cache is not None:
        cache[(method, path)] = tok
    return tok


def files_fingerprint(files: Iterable[tuple[str, Path]], method: str, prefix: bytes = b"",
                       cache: dict | None = None) -> str:
    """sha256 over sorted (relative path, file token) lines; a missing file hashes as 'missing'."""
    h = hashlib.sha256(prefix)
    for rel, path in sorted(files, key=lambda t: t[0]):
        h.update(f"{rel}\t{file_token(path, method, cache)}\n".encode())
    return h.hexdigest()


#: What `Source.provenance()['content']` is: the key of a dataset read from one file per image,
#: whatever folder shape holds the files (synset folders, a flat folder with labels.csv or the
#: devkit's ground truth). Version 1: sha256 over the records in position order of
#: "<file token>\t<labels>" lines (`FINGERPRINTS`). The path of a file is not in it, so moving the
#: files between layouts keeps the key; the order is (`registry.canonical_order` sorts a registry
#: dataset's records by file name, so every layout of ImageNet val lists them by val number).
CONTENT_KEY = "files-in-order-v1"


def check_fingerprint_method(owner: str, method: str) -> None:
    """ValueError naming `owner` unless `method` is one of `FINGERPRINTS`."""
    if method not in FINGERPRINTS:
        raise ValueError(f"{owner}: fingerprint must be one of {sorted(FINGERPRINTS)}, got {method!r}")

