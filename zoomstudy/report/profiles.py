"""The profiles the study notebooks run with, and the parameters each notebook declares.

A *profile* is a named set of parameter values saying where the data and the models come from and
what hardware runs them ("offline", "local", "quick", "paper"; see `PROFILES`). It is a frozen
`StudyProfile` (not the model profile of `report.model_profile`): values shared by the notebooks
(`common`) and values for one notebook (`notebooks`).

Each study notebook declares the parameters it takes (`NOTEBOOK_PARAMETERS`), and its parameters
cell lists exactly those (tests/test_notebooks.py checks it), so that a notebook holds no parameter
it ignores: the controlled experiment (00) takes none of the sweep parameters, the paper notebook
(06) only the result store. A profile gives a notebook only the parameters the notebook declares;
a notebook not declared here (a user's own) gets all of a profile's common values.

The profile resolves inside the notebook: its parameters cell declares `profile`, `report_dir` and
its parameters, leaving at None those a profile provides, and the next cell calls
`notebook_parameters(profile, "<notebook>", globals())`, which fills them from the profile with the
values set in the cell overriding the profile's. `notebooks.reproduce` injects the same resolution
(`resolve_parameters`), so a notebook run by hand, on Colab or headless gets the same values.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_PROFILE = "offline"

#: The parameters of one sweep (`steps.open_sweep`): every profile sets them.
SWEEP = ("model", "checkpoint", "pretrained", "dataset", "root", "scales", "grid", "crop", "max_images",
         "results_dir", "device")

#: notebook (file stem) -> the parameters its parameters cell declares, besides `profile` and
#: `report_dir` (which every notebook declares). A profile value for a parameter a notebook does not
#: declare never reaches it.
NOTEBOOK_PARAMETERS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "00_controlled_experiment": ("seeds", "epochs", "images_per_epoch", "n_test", "n_probe", "n_boot",
                                 "hard_candidates"),
    "01_oracle_accuracy": SWEEP + ("top_n", "cv_folds", "seed", "alpha", "gallery_image"),
    "02_center_bias": SWEEP + ("top_n", "alpha"),
    "03_test_time_augmentation": SWEEP + ("label_space", "alpha", "tta_group", "tta_aggregation", "n_examples",
                                          "memo_model", "memo_checkpoint", "memo_pretrained", "memo_paper_model",
                                          "memo_methods", "memo_k", "memo_lr", "memo_seeds", "memo_max_images"),
    "04_imagenet_hard": SWEEP + ("plain_protocol", "compare_with", "n_examples", "top_n", "cv_folds", "seed",
                                 "alpha"),
    "05_zoom_sensitivity": SWEEP + ("models", "checkpoints", "sizes", "zoom_maps", "max_oracle_gap",
                                    "max_center_bias"),
    "06_the_paper": ("results_dir", "data_dir", "roots", "table1_models", "top_n", "folds"),
})


def takes(notebook: str | Path, name: str) -> bool:
    """Whether a notebook takes the parameter `name` (any name, for a notebook not declared here)."""
    declared = NOTEBOOK_PARAMETERS.get(Path(str(notebook)).stem)
    return declared is None or name in declared or name in ("profile", "report_dir")


def check_parameters(params: Mapping[str, Any], what: str) -> None:
    """Raise ValueError unless params is a dict whose keys are Python identifiers (names papermill can assign)."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{what} must be a dict of parameter name -> value, got {type(params).__name__}")
    bad = [k for k in params if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        raise ValueError(f"{what}: parameter names must be Python identifiers, got {bad}")


def papermill_value(value: Any) -> Any:
    """Values papermill can write as Python literals: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [papermill_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): papermill_value(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class StudyProfile:
    """One profile: `common` values for every notebook that declares the parameter, `notebooks`
    values for one notebook (they override `common`). Read-only; `updated` makes a changed copy."""

    name: str
    common: Mapping[str, Any]
    notebooks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        check_parameters(self.common, f"profile {self.name!r}")
        for stem, values in self.notebooks.items():
            check_parameters(values, f"profile {self.name!r}[{stem!r}]")
            stray = [k for k in values if not takes(stem, k)]
            if stray:
                raise ValueError(f"profile {self.name!r} sets {stray} for {stem}, which does not declare them "
                                 f"(NOTEBOOK_PARAMETERS)")
        object.__setattr__(self, "common", MappingProxyType(dict(self.common)))
        object.__setattr__(self, "notebooks", MappingProxyType({k: MappingProxyType(dict(v))
                                                                for k, v in self.notebooks.items()}))

    def updated(self, common: Mapping[str, Any] | None = None,
                notebooks: Mapping[str, Mapping[str, Any]] | None = None) -> StudyProfile:
        """A copy with `common` values and per-notebook values merged over this profile's."""
        merged = {k: dict(v) for k, v in self.notebooks.items()}
        for stem, values in (notebooks or {}).items():
            merged[stem] = {**merged.get(stem, {}), **values}
        return StudyProfile(self.name, {**self.common, **(common or {})}, merged, self.description)

    def parameters(self, notebook: str | Path) -> dict[str, Any]:
        """The values this profile gives one notebook (a name, file name or path): the common values
        the notebook declares, then its own entry; deep copies, as papermill literals."""
        stem = Path(str(notebook)).stem
        values = {k: v for k, v in self.common.items() if takes(stem, k)}
        values.update(self.notebooks.get(stem, {}))
        return {k: papermill_value(copy.deepcopy(v)) for k, v in values.items()}


def _realdata_dir() -> str:
    """The real-data kit: $ZOOMSTUDY_REALDATA, else ../shared/realdata next to the repository."""
    default = Path(__file__).resolve().parents[3] / "shared" / "realdata"  # <checkout>/zoomstudy/report/this file
    return os.environ.get("ZOOMSTUDY_REALDATA", str(default))


def _default_profiles() -> dict[str, StudyProfile]:
    rd = _realdata_dir()
    # A reduced grid (6 scales x 3 x 3 = 54 views, zoom out to zoom in) for CPU runs of a few minutes.
    reduced_scales = [64, 128, 224, 256, 320, 448]
    # ImageNet-Hard for the local profile: a local copy named by $ZOOMSTUDY_IMAGENET_HARD, else the
    # synthetic multi-label stand-in (no network in that profile).
    local_hard = "imagenet-hard" if os.environ.get("ZOOMSTUDY_IMAGENET_HARD") else "synthetic-hard:24"
    profiles = [
        StudyProfile(
            "offline",
            # the paper in miniature: the world model trained like ImageNet models (RandomResizedCrop)
            # on photo-like world images (varied position and size, centre preference), 35 scales x 3 x 3
            {"model": "world:rrc", "checkpoint": None, "pretrained": False, "dataset": "world-photo:96", "root": None,
             "scales": None, "grid": 3, "crop": 56, "max_images": None, "results_dir": "results/offline",
             "device": "cpu"},
            {
                # the world's ImageNet-Hard (experiment/hard_set.py), compared with the photo set above
                "04_imagenet_hard": {"dataset": "world-hard:150", "plain_protocol": "sweep",
                                     "compare_with": ["world-photo"]},
                "05_zoom_sensitivity": {"models": [], "checkpoints": [], "sizes": [32, 40, 48, 56, 64, 80, 96, 112]},
                # MEMO on all 96 images, the paper's K = 16, three view seeds. Its SGD step 0.00025 was tuned for
                # ResNet-50 and moves this small CNN by nothing (MEMO = baseline on every image); on a held-out
                # draw (96 photo-like images, seed 1) accuracy rises with the step and plateaus from 0.05
                # (README, "The controlled experiment"), so the world uses 0.05.
                "03_test_time_augmentation": {"memo_k": 16, "memo_seeds": [0, 1, 2], "memo_max_images": None,
                                              "memo_lr": 0.05},
            },
            "the controlled experiment's world and models, no network; runs anywhere",
        ),
        StudyProfile(
            "local",
            {"model": "torchvision:squeezenet1_0", "checkpoint": f"{rd}/weights/squeezenet1_0_deepcompression.pt",
             "pretrained": False, "dataset": f"csv:{rd}/imagenet-sample", "root": None, "scales": None, "grid": 3,
             "crop": 224, "max_images": None, "results_dir": "results/local", "device": None},
            {
                "04_imagenet_hard": {"dataset": local_hard, "plain_protocol": "sweep"},
                "03_test_time_augmentation": {"memo_k": 16, "memo_seeds": [0], "memo_max_images": 20},
            },
            "your own images, labels and checkpoint (by default the real-data kit), no network",
        ),
        StudyProfile(
            "quick",
            {"model": "resnet18", "checkpoint": None, "pretrained": True, "dataset": "imagenet-hard", "root": None,
             "scales": reduced_scales, "grid": 3, "crop": 224, "max_images": 300, "results_dir": "results/quick",
             "device": None},
            {
                "04_imagenet_hard": {"plain_protocol": "sweep"},
                "03_test_time_augmentation": {"memo_k": 16, "memo_seeds": [0], "memo_max_images": 30},
            },
            "a small pretrained model and a few hundred hub images; CPU with internet",
        ),
        StudyProfile(
            "paper",
            {"model": "resnet50", "checkpoint": None, "pretrained": True, "dataset": "imagenet-val", "root": None,
             "scales": None, "grid": 3, "crop": 224, "max_images": None, "results_dir": "results/paper",
             "device": None},
            {
                "04_imagenet_hard": {"dataset": "imagenet-hard", "plain_protocol": "model",
                                     "compare_with": ["imagenet-val"]},
                # Table 4 is ViT-B/32's, Table 5 ResNet-50's (robust models: memo_checkpoint + memo_paper_model)
                "03_test_time_augmentation": {"model": "vit_b_32", "memo_model": "resnet50", "memo_k": 16,
                                              "memo_seeds": [0], "memo_max_images": None},
            },
            "the paper's models and datasets; GPU with internet",
        ),
    ]
    return {p.name: p for p in profiles}


#: profile name -> StudyProfile. Add a profile by assignment (`PROFILES["mine"] = StudyProfile("mine", {...})`).
#:
#: * offline: the controlled experiment (00) trains small CNNs on the procedural world; the paper
#:   notebooks then analyse the one trained like ImageNet models ("world:rrc", RandomResizedCrop) on
#:   96 photo-like world images ("world-photo:96") with the paper's scales scaled to its 56-px input
#:   (35 distinct scales): minutes on a CPU, no network. 04_imagenet_hard measures it on the world's
#:   ImageNet-Hard ("world-hard:150", built by experiment/hard_set.py as a local parquet).
#: * local: the real-data kit (SqueezeNet 1.0 Deep Compression weights, its 100 ImageNet images),
#:   the paper's 324 views; compared with the kit's reference figures. ImageNet-Hard from
#:   $ZOOMSTUDY_IMAGENET_HARD when set, else the stand-in.
#: * quick: torchvision ResNet-18 (V1 weights, a paper model) on the first 300 ImageNet-Hard images
#:   from the hub at the pinned commit (only the first of its 9 parquet files, ~190 MB, is downloaded;
#:   the 10,980-row guard applies, from the files' parquet footers), 6 scales.
#: * paper: ResNet-50 (torchvision IMAGENET1K_V1, the paper's; "torchvision:resnet50" would load V2)
#:   on ImageNet val (a local copy: root or $ZOOMSTUDY_IMAGENET_VAL) with the paper's 324 views on a
#:   GPU; ImageNet-Hard from the hub. The paper's other models and datasets are the `model` and
#:   `dataset` parameters: pass them as overrides, one run per model (e.g. model="vit_b_32",
#:   dataset="imagenet-a"); the result store keeps every sweep apart.
PROFILES: dict[str, StudyProfile] = _default_profiles()


def resolve_parameters(profile: str, notebook: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """The parameters one notebook runs with: {"profile": name} < the profile's values for it < overrides.

    notebook: a name, file name or path (its stem selects the notebook-specific entry). Overrides of a
    parameter the notebook does not declare are left out (an override given to a whole run reaches
    the notebooks that take it).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    overrides = overrides or {}
    check_parameters(overrides, "overrides")
    params: dict[str, Any] = {"profile": profile, **PROFILES[profile].parameters(notebook)}
    params.update({k: papermill_value(copy.deepcopy(v)) for k, v in overrides.items() if takes(notebook, k)})
    return params


#: Names a notebook's namespace holds that are not parameters (IPython's own).
_NOT_PARAMETERS = frozenset({"In", "Out", "get_ipython", "exit", "quit", "profile", "report_dir"})


def _plain(value: Any) -> bool:
    """A value a parameters cell can hold: None, bool, number, string, or lists / dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


class Parameters(dict):
    """A notebook's resolved parameters: a dict that also reads as attributes (`p.model`).

    Attribute access keeps the notebook cells short and fails loudly on a misspelt name, where
    `p.get("modle")` would quietly give None.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}; parameters are {sorted(self)}") from None


def notebook_parameters(profile: str | None, notebook: str | Path, namespace: Mapping[str, Any],
                        ) -> Parameters:
    """The parameters a notebook runs with, resolved inside the notebook: the one call after its parameters cell.

    A parameters cell declares `profile`, `report_dir` and the notebook's parameters; a parameter
    whose value is None takes the profile's value, any other value overrides the profile. The
    notebook passes its namespace (`globals()`): the parameters are its plain values (None, numbers,
    strings, lists, dicts; no modules, functions, private or IPython names) that the notebook
    declares (`NOTEBOOK_PARAMETERS`; any, for a notebook not declared there). So a notebook run by
    hand with `profile = "quick"` gets the quick profile's model and data, exactly as
    `zoomstudy reproduce --profile quick` (which injects the profile's values, resolved the same
    way) gives it, and a Colab session that ran later cells does not pass their variables on.

    profile None means DEFAULT_PROFILE. A parameter that is None and that the profile does not set
    stays None (the notebook's own meaning of None, e.g. "all images").
    """
    profile = DEFAULT_PROFILE if profile is None else profile
    if not isinstance(namespace, Mapping):
        raise ValueError(f"notebook_parameters: namespace must be a dict such as globals(), got {type(namespace).__name__}")
    given = {k: v for k, v in namespace.items()
             if isinstance(k, str) and k.isidentifier() and not k.startswith("_") and k not in _NOT_PARAMETERS
             and takes(notebook, k) and _plain(v)}
    explicit = {k: v for k, v in given.items() if v is not None}
    resolved = resolve_parameters(profile, notebook, explicit)
    for k in given:
        resolved.setdefault(k, None)
    resolved["report_dir"] = namespace.get("report_dir")
    return Parameters(resolved)
