"""The controlled experiment's names for the entry layer: "world:REGIME[:ctx-CONTEXT]" models and
"world:REGIME", "world-test:N", "world-photo:N", "world-hard:N" data.

They are registered at import (the end of this module) in the scheme registries of the stages below,
`models.loading.register_model_scheme` and `data.registry.register_data_scheme`, like timm's
register_model: `study.open_model` / `study.open_data` (and the CLI's checks) ask the registries, so
neither names the world. The experiment package imports this module, and `study` imports the package.
One module above `runs` and `hard_set`, so neither imports the other's opener (the world-hard set is
built from world models, and is itself a world dataset)."""
from __future__ import annotations

from zoomstudy.data.registry import register_data_scheme
from zoomstudy.experiment.runs import Training, world_label_space, world_model
from zoomstudy.models.loading import register_model_scheme


def open_world_model(spec: str, *, device=None, training: Training = Training(), **world_kw):
    """"world:REGIME" (the seed-0 model of a training regime) or "world:REGIME:ctx-CONTEXT" (of a
    context world): the models the notebooks analyse, the same cached weights as notebook 00's."""
    from zoomstudy.experiment.world import CONTEXTS, REGIMES

    parts = spec.split(":")
    regime = (parts[1] if len(parts) > 1 else "") or "centered"
    spec_kw = {}
    if len(parts) > 2:
        ctx = parts[2].removeprefix("ctx-")
        if ctx not in CONTEXTS:
            raise ValueError(f"{spec!r}: context must be ctx-one of {CONTEXTS}")
        spec_kw["context"] = ctx
    if parts[0] != "world" or len(parts) > 3 or regime not in REGIMES:
        raise ValueError(f"{spec!r}: expected world:REGIME[:ctx-CONTEXT] with REGIME one of {REGIMES}")
    spec_kw.update(world_kw.pop("spec_kw", None) or {})
    return world_model(regime, device=device, training=training, spec_kw=spec_kw, **world_kw)  # seed=, cache=


def world_data_label_space(record: dict) -> str | None:
    """The label space world images are scored in (the world's own classes: "world-12"), from a result
    set's dataset record; None when the record is not world data. World sources record their spec;
    world-hard (a parquet source) is drawn from the default world."""
    from zoomstudy.experiment.world import WorldSpec

    if record.get("source") == "zoomstudy.world":
        return world_label_space(WorldSpec.from_dict(record["spec"])).name
    if str(record.get("name", "")).split(":")[0] in WORLD_DATA:
        return world_label_space(WorldSpec()).name
    return None


#: World data specs of study.open_data: name -> (split, default number of images).
WORLD_DATA = {"world-test": ("test", 48), "world-photo": ("photo", 96), "world-hard": ("hard", 400)}


def open_world_data(spec: str, root=None, **kw):
    """The world's measurement sets by spec string:

    * "world:REGIME": the 48 test images (legacy spelling; the regime does not change test images);
    * "world-test[:N]": N test images (object centred at the typical size);
    * "world-photo[:N]": N photo-like images (varied position and size, centre preference);
    * "world-hard[:N]": the world-hard set built from N candidates per origin (hard_set.py), as a
      parquet source with ImageNet-Hard's columns; written to `root` or the world cache.
    """
    from zoomstudy.experiment.world import WorldSource, WorldSpec

    name, sep, rest = spec.partition(":")
    if name == "world":
        n = int(kw.pop("n", 48))
        return WorldSource(WorldSpec(regime=rest or "centered", **kw), n=n, split="test")
    if name not in WORLD_DATA:
        raise ValueError(f"{spec!r}: expected world:REGIME or one of {', '.join(f'{w}[:N]' for w in WORLD_DATA)}")
    split, n = WORLD_DATA[name]
    if rest:
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(f"{spec!r}: {name}:N needs a positive integer N")
        n = int(rest)
    if split == "hard":
        from zoomstudy.experiment.hard_set import open_world_hard

        return open_world_hard(n_per_origin=n, root=root)
    return WorldSource(WorldSpec(**kw), n=n, split=split)


register_model_scheme("world", open_world_model)
for _name in ("world", *WORLD_DATA):
    register_data_scheme(_name, open_world_data, label_space=world_data_label_space)
