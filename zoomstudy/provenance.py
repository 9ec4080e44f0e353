"""What produced a stored number: the commit of the code that ran, and whether the weights were trained.

Every stored table (a sweep's settings.json, a MEMO table's JSON, a report's provenance file) records
the git commit, and every report says when its model had random weights; these are the one
implementation of both. Nothing here imports torch, so the report site can use it cheaply.
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
