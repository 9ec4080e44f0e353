"""What produced a stored number: the commit of the code that ran, whether the weights were trained, and
one flat record of a stored result's settings.

Every stored table (a sweep's settings.json, a MEMO table's JSON, a report's provenance file) records
the git commit, and every report says when its model had random weights; these are the one
implementation of both. A stored result's settings keep what can change its numbers under "key" and
where it ran (device, data path) under "provenance" (`keyed.split_place`): `stored` joins the two
again, and `flatten` turns them into the one flat record (model, weights, data, code) that reports and
profile.json show. Nothing here imports torch, so the report site can use it cheaply.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

#: The package's own folder: where `git_commit` looks when given no folder.
_PACKAGE_DIR = Path(__file__).resolve().parent


def git_commit(*dirs: str | os.PathLike, dirty: bool = False) -> str | None:
    """HEAD of the first git checkout among dirs (default: the one holding this package), None outside one.

    dirty: append "-dirty" when tracked files differ from HEAD (one more `git status`, read-only: it
    never takes the index lock of a shared checkout).
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    for d in dirs or (_PACKAGE_DIR,):
        try:
            head = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=10, env=env)
            if head.returncode != 0 or not head.stdout.strip():
                continue
            if not dirty:
                return head.stdout.strip()
            status = subprocess.run(["git", "-C", str(d), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=30, env=env)
            changed = status.returncode == 0 and status.stdout.strip() != ""
            return head.stdout.strip() + ("-dirty" if changed else "")
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def is_random_weights(record: Mapping) -> bool:
    """The weights were random (untrained): weights_id 'random' or 'random-<hash of the initial state>'.

    record: a result set's or a MEMO table's settings (read at `settings["key"]["model"]`), or any
    record with a `weights_id` (a model's provenance, a report's provenance summary).
    """
    model = record["key"]["model"] if "key" in record else record
    return str(model.get("weights_id")).startswith("random")


def stored(settings: Mapping, what: str) -> dict:
    """settings['key'][what] together with settings['provenance'][what] (what: 'model' or 'dataset'):
    the content that keys a stored result plus where it came from (path, device) on the machine that
    created it. A sweep's own processes each record theirs in runs/*.json."""
    return {**settings.get("key", {}).get(what, {}), **settings.get("provenance", {}).get(what, {})}


def flatten(settings: Mapping, checkpoint: str | os.PathLike | None = None) -> dict:
    """One flat, JSON-ready record of what produced a stored result (a sweep's or a MEMO table's
    settings): the model and its weights, the label space, the device, the data (name, kind, where,
    revision, rows, fingerprints), the stored set's key and the code. checkpoint: the file the weights
    came from (the settings keep only its sha256). Reports add their own phrases to it."""
    model, data = stored(settings, "model"), stored(settings, "dataset")
    return {
        "architecture": model.get("architecture") or f"{model.get('source')}:{model.get('name')}",
        "weights_id": model.get("weights_id"),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "label_space": (model.get("label_space") or {}).get("name"),
        "device": model.get("device"),
        "dataset": data.get("name"),
        "dataset_kind": data.get("kind"),
        "dataset_location": data.get("location"),
        "dataset_revision": data.get("resolved_revision") or data.get("revision"),
        "dataset_rows": data.get("hub_rows") or data.get("rows"),  # a hub prefix: the commit's full count
        "dataset_fingerprint": data.get("fingerprint"),
        "labels_fingerprint": data.get("labels_fingerprint"),
        "key_hash": settings.get("key_hash"),
        "zoomstudy": settings.get("key", {}).get("zoomstudy"),
        "git_commit": settings.get("git_commit"),
        "versions": model.get("versions"),
    }
