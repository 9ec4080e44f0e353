"""What produced a report's numbers, in one sentence: the provenance every notebook prints and records.

`provenance_info` gathers which profile, model, weights, data and grid produced a result set (from
its settings and the store's provenance record), and `provenance_statement` says it in the sentence
every report prints near its top and records at its end; `describe_weights` and `describe_data`
make its phrases (also the model profile's). The flat record itself is `provenance.flatten`, shared with
the model profile.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from zoomstudy.provenance import flatten, is_random_weights, stored
from zoomstudy.views import ViewGrid


def provenance_info(result_set, profile: str | None, checkpoint: str | None = None) -> dict:
    """What produced a result set: profile, model, weights, data and grid, JSON-serialisable.

    result_set: a `sweep.store.ResultSet` (then the number of images it holds is reported too, e.g. the
    first 300 of 10,980) or its settings dict. checkpoint: the file the weights came from (the
    settings keep only its sha256).
    """
    if isinstance(result_set, Mapping):
        settings, stored_images = result_set, None
    else:
        settings, stored_images = result_set.settings, int(len(result_set.images()))
    flat = flatten(settings, checkpoint)  # the one flattening of a stored result's provenance
    grid = ViewGrid.from_dict(settings["key"]["grid"])
    info = {"profile": profile, "model": flat["architecture"], "weights_id": flat["weights_id"],
            "weights": describe_weights(stored(settings, "model"), checkpoint)}
    info.update({k: flat[k] for k in ("checkpoint", "label_space", "device", "dataset", "dataset_kind",
                                      "dataset_location", "dataset_revision", "dataset_rows", "dataset_fingerprint")})
    info.update({"images_stored": stored_images, "data": describe_data(stored(settings, "dataset"), stored_images),
                 "grid": grid.to_dict(), "n_views": grid.n_views, "result_set": flat["key_hash"],
                 "zoomstudy": flat["zoomstudy"], "git_commit": flat["git_commit"]})
    info["statement"] = provenance_statement(info)
    return info


def describe_weights(model: Mapping, checkpoint: str | None = None) -> str:
    """One phrase for the weights of a model provenance record ('random (untrained) weights', ...)."""
    arch = model.get("architecture") or f"{model.get('source')}:{model.get('name')}"
    wid = str(model.get("weights_id"))
    if is_random_weights(model):
        return f"random (untrained {arch})"
    if model.get("source") == "checkpoint" or checkpoint:
        where = f" {Path(str(checkpoint)).name}" if checkpoint else ""
        return f"checkpoint{where} (sha256 {wid[:12]}, {arch})"
    return f"{wid} ({arch})"


def describe_data(data: Mapping, used: int | None = None) -> str:
    """One phrase for a dataset provenance record: name, kind, size (and how many images were `used`
    when not all), where, revision, fingerprint."""
    world = data.get("source") == "zoomstudy.world"  # experiment.world.WorldSource.provenance()
    kind = data.get("kind") or (f"procedural world, {data.get('split')} split, seed {data.get('seed')}" if world
                                else None)
    parts = [str(kind)] if kind else []
    rows = data.get("rows") if data.get("rows") is not None else data.get("items")
    rows = data.get("hub_rows") or rows  # a pinned hub read of the first files: of the commit's full count
    if used is not None and rows is not None and used != rows:
        parts.append(f"{used} of {rows} images")
    elif rows is not None:
        parts.append(f"{rows} images")
    loc = data.get("location")
    if isinstance(loc, list):
        loc = f"{len(loc)} files in {Path(loc[0]).parent}" if loc else None
    if loc:
        parts.append(str(loc))
    rev = data.get("resolved_revision") or data.get("revision")
    if rev:
        parts.append(f"revision {rev}")
    if data.get("kind") == "synthetic" and data.get("params"):
        parts.append(f"generator seed {data['params'].get('seed')}")
    if data.get("fingerprint"):
        parts.append(f"fingerprint {str(data['fingerprint'])[:12]}")
    return f"{data.get('name')} ({', '.join(parts)})" if parts else str(data.get("name"))


def provenance_statement(info: Mapping) -> str:
    """'This report was produced by profile X with weights Y on data Z (grid ...).'"""
    g = info.get("grid") or {}
    grid = ""
    if g:
        grid = (f"; {info.get('n_views')} views per image: {len(g['scales'])} scales x {g['grid']}x{g['grid']} "
                f"anchors, crop {g['crop']}")
    return (f"This report was produced by profile {info.get('profile')} with weights {info.get('weights')} "
            f"on data {info.get('data')}{grid}.")
