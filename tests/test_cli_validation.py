"""One validation layer per subcommand: every option of every subcommand is range-checked before
anything loads, with one line on stderr and exit 2 (0: ok, 1: a regression under `profile --check`,
2: bad input). The parser is walked: an option added without a case here fails
`test_every_option_of_every_subcommand_has_a_validation_case`.

Every case runs `cli.main` in-process with the model, data, notebook and matrix entry points replaced
by ones that fail the test if called, so each case also proves nothing was loaded.
"""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from zoomstudy import cli, matrix, study

ARCH = "torchvision:squeezenet1_0"
CUDA_MISSING = "cuda:7"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "data"
    data.mkdir()
    for i in range(2):
        Image.new("RGB", (20, 20), (i * 90, 0, 0)).save(data / f"{i}.jpg")
    (data / "labels.csv").write_text("file,label\n0.jpg,1\n1.jpg,2\n")
    (tmp / "a_file").write_text("not a directory")
    rs = tmp / "rs"
    rs.mkdir()
    (rs / "settings.json").write_text("{}")
    (tmp / "results").mkdir()
    checks = {
        "list": [1, 2, 3], "null_metrics": {"metrics": None}, "dict_metric": {"metrics": {"oracle_gap": {"a": 1}}},
        "true_metric": {"metrics": {"oracle_gap": True}},
    }
    for name, value in checks.items():
        (tmp / f"{name}.json").write_text(json.dumps(value))
    (tmp / "not_json.json").write_text("Expecting value")
    return {"data": data, "file": tmp / "a_file", "rs": rs, "results": tmp / "results", "tmp": tmp,
            **{name: tmp / f"{name}.json" for name in [*checks, "not_json"]}}


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(what):
        def f(*a, **k):
            raise AssertionError(f"{what} ran before the bad parameter was reported")
        return f

    monkeypatch.setattr(study, "open_model", refuse("a model"))
    monkeypatch.setattr(study, "open_data", refuse("the data"))
    monkeypatch.setattr("zoomstudy.models.loading.load_model", refuse("a model"))
    monkeypatch.setattr(matrix, "preflight", refuse("the paper's preflight"))
    monkeypatch.setattr(matrix, "run", refuse("the paper's sweeps"))
    monkeypatch.setattr("zoomstudy.report.notebooks.reproduce", refuse("a notebook"))
    monkeypatch.setattr("zoomstudy.report.model_profile.profile", refuse("a profile"))


BASE = {
    "sweep": ["sweep", "--model", ARCH, "--dataset", "csv:{data}", "--results-dir", "{tmp}/out", "--device", "cpu",
              "--workers", "0", "--no-pretrained", "--quiet"],
    "merge": ["merge", "{rs}", "--shards", "1"],
    "summary": ["summary", "{results}"],
    "tta-policy": ["tta-policy", "{rs}", "--out", "{tmp}/policy.json"],
    "reproduce": ["reproduce", "--out", "{tmp}/reports", "--quiet"],
    "profile": ["profile", "--model", ARCH, "--images", "{data}", "--out", "{tmp}/o", "--device", "cpu",
                "--no-pretrained", "--quiet"],
    "paper": ["paper", "--results-dir", "{tmp}/paper", "--no-probe", "--dry-run", "--device", "cpu", "--quiet"],
}

#: (subcommand, option) -> [(arguments replacing/adding to BASE, words the one line must hold)]
#: words None: the message is another issue's (23: --expected-rows, --checkpoint NAME=FILE); exit 2, one line.
CASES = {
    ("sweep", "--model"): [(["--model", "no-such-model"], "unknown model")],
    ("sweep", "--checkpoint"): [(["--checkpoint", "{tmp}/nowhere.pt"], "not a file")],
    ("sweep", "--dataset"): [(["--dataset", "imagenet-vall"], "unknown dataset")],
    ("sweep", "--root"): [(["--dataset", "imagenet-val", "--root", "{tmp}/nowhere"], "does not exist")],
    ("sweep", "--label-space"): [(["--label-space", "imagenet-z"], "imagenet-z")],
    ("sweep", "--scales"): [(["--scales", "100000"], "--scales must be <= 4096"), (["--scales", "0"], "--scales")],
    ("sweep", "--grid"): [(["--grid", "0"], "--grid"), (["--grid", "1000"], "--grid must be <=")],
    ("sweep", "--crop"): [(["--crop", "0"], "--crop"), (["--crop", "100000"], "--crop must be <=")],
    ("sweep", "--results-dir"): [(["--results-dir", "{file}"], "is a file")],
    ("sweep", "--max-images"): [(["--max-images", "0"], "--max-images")],
    ("sweep", "--batch-size"): [(["--batch-size", "0"], "--batch-size")],
    ("sweep", "--workers"): [(["--workers", "-1"], "--workers"), (["--workers", "100000"], "--workers must be <=")],
    ("sweep", "--device"): [(["--device", CUDA_MISSING], "cuda")],
    ("sweep", "--normalization"): [(["--normalization", "mine"], "invalid choice")],
    ("sweep", "--shard"): [(["--shard", "1/0"], "1/0"), (["--shard", "2/2"], "2/2"), (["--shard", "x"], "i/n")],
    ("sweep", "--fingerprint"): [(["--fingerprint", "md5"], "invalid choice"),
                                 (["--dataset", "synthetic:2", "--fingerprint", "sha256"], "--fingerprint")],
    ("sweep", "--max-host-mb"): [(["--max-host-mb", "10"], "--max-host-mb")],
    ("merge", "result_set"): [(["merge", "{tmp}/nowhere", "--shards", "1"], "not a result set")],
    ("merge", "--shards"): [(["merge", "{rs}", "--shards", "0"], "--shards")],
    ("summary", "results_dir"): [(["summary", "{file}"], "not a directory")],
    ("summary", "--model"): [(["--model", "nosuch"], "no result sets")],
    ("summary", "--dataset"): [(["--dataset", "nosuch"], "no result sets")],
    ("tta-policy", "result_set"): [(["tta-policy", "{tmp}/nowhere"], "not a result set")],
    ("tta-policy", "--k"): [(["--k", "0"], "--k must be >= 1"), (["--k", "37"], "--k must be <= 36")],
    ("tta-policy", "--aggregate"): [(["--aggregate", "median"], "invalid choice")],
    ("tta-policy", "--folds"): [(["--folds", "1"], "--folds must be >= 2")],
    ("tta-policy", "--seed"): [(["--seed", "-1"], "--seed must be >= 0")],
    ("tta-policy", "--out"): [(["--out", "{tmp}"], "is a directory"), (["--out", "{file}/p.json"], "is not a directory")],
    ("reproduce", "--profile"): [(["--profile", "fastest"], "--profile must be one of")],
    ("reproduce", "--out"): [(["--out", "{file}"], "is a file")],
    ("reproduce", "--notebooks"): [(["--notebooks", "{tmp}/nowhere"], "not a directory")],
    ("reproduce", "--only"): [(["--only", "99_nothing"], "no notebook")],
    ("reproduce", "--param"): [(["-p", "novalue"], "key=value")],
    ("profile", "--model"): [(["--model", "no-such-model"], "unknown model")],
    ("profile", "--checkpoint"): [(["--checkpoint", "{tmp}/nowhere.pt"], "not a file")],
    ("profile", "--images"): [(["--images", "{tmp}/nowhere"], "unknown dataset")],
    ("profile", "--labels"): [(["--labels", "{tmp}/nowhere.csv"], "--labels")],
    ("profile", "--out"): [(["--out", "{file}"], "is a file")],
    ("profile", "--results-dir"): [(["--results-dir", "{file}"], "is a file")],
    ("profile", "--scales"): [(["--scales", "100000"], "--scales must be <="), (["--scales", ""], "--scales")],
    ("profile", "--grid"): [(["--grid", "0"], "--grid"), (["--grid", "1000"], "--grid must be <=")],
    ("profile", "--crop"): [(["--crop", "0"], "--crop")],
    ("profile", "--sizes"): [(["--sizes", "0"], "--sizes"), (["--sizes", "a,b"], "--sizes"),
                             (["--sizes", "100000"], "--sizes")],
    ("profile", "--zoom-maps"): [(["--zoom-maps", "-1"], "--zoom-maps")],
    ("profile", "--max-images"): [(["--max-images", "0"], "--max-images")],
    ("profile", "--label-space"): [(["--label-space", "imagenet-z"], "imagenet-z")],
    ("profile", "--batch-size"): [(["--batch-size", "0"], "--batch-size")],
    ("profile", "--workers"): [(["--workers", "-1"], "--workers")],
    ("profile", "--device"): [(["--device", CUDA_MISSING], "cuda")],
    ("profile", "--max-oracle-gap"): [(["--max-oracle-gap", "nan"], "--max-oracle-gap")],
    ("profile", "--max-center-bias"): [(["--max-center-bias", "inf"], "--max-center-bias")],
    ("profile", "--check"): [(["--check", "{list}"], "list.json holds a JSON list"),
                             (["--check", "{null_metrics}"], "'metrics' is null"),
                             (["--check", "{dict_metric}"], "not a number"),
                             (["--check", "{true_metric}"], "'oracle_gap' is true, not a number"),
                             (["--check", "{not_json}"], "not_json.json is not JSON"),
                             (["--check", "{tmp}/nowhere.json"], "no such file")],
    ("paper", "--results-dir"): [(["--results-dir", "{file}"], "is a file")],
    ("paper", "--root"): [(["--root", "imagenet-val"], "NAME=VALUE")],
    ("paper", "--data-dir"): [(["--data-dir", "{file}"], "is a file")],
    ("paper", "--checkpoint"): [(["--checkpoint", "resnet50"], "NAME=VALUE"),
                                (["--checkpoint", "resnet50={tmp}/nowhere.pt"], "not a file"),
                                (["--checkpoint", "resnet5O={file}"], "no model of the plan")],
    ("paper", "--models"): [(["--models", "no-such-model"], "no-such-model")],
    ("paper", "--datasets"): [(["--datasets", "imagenet-vall"], "imagenet-vall")],
    ("paper", "--hard-models"): [(["--hard-models", "no-such-model"], "no-such-model")],
    ("paper", "--hard-revision"): [(["--hard-revision", "main"], "40-hex")],
    ("paper", "--hard-rows"): [(["--hard-rows", "0"], "--hard-rows")],
    ("paper", "--expected-rows"): [(["--expected-rows", "imagenet-val=abc"], "--expected-rows imagenet-val=abc"),
                                   (["--expected-rows", "imagenet-val=partial"], "integer"),
                                   (["--expected-rows", "imagenet-vall=5"], "unknown dataset"),
                                   (["--expected-rows", "imagenet-real=none"], "imagenet-val=N")],
    ("paper", "--scales"): [(["--scales", "100000"], "--scales must be <=")],
    ("paper", "--grid"): [(["--grid", "0"], "--grid")],
    ("paper", "--crop"): [(["--crop", "0"], "--crop")],
    ("paper", "--max-images"): [(["--max-images", "0"], "--max-images")],
    ("paper", "--batch-size"): [(["--batch-size", "0"], "--batch-size")],
    ("paper", "--workers"): [(["--workers", "-1"], "--workers")],
    ("paper", "--device"): [(["--device", CUDA_MISSING], "cuda")],
    ("paper", "--shard"): [(["--shard", "1/0"], "1/0"), (["--shard", "3/2"], "3/2")],
    **{(c, "--amp"): [(["--amp", "int8"], "--amp"), (["--amp", "bf16", "--device", "cpu"], "CUDA")]
       for c in ("sweep", "profile", "paper")},
}


def _options():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sp in sub.choices.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction) or action.nargs == 0:
                continue  # --help and flags: no value that could be out of range
            yield command, max(action.option_strings, key=len) if action.option_strings else action.dest


def test_every_option_of_every_subcommand_has_a_validation_case():
    missing = [o for o in _options() if o not in CASES]
    assert not missing, f"options without a validation case: {missing}"
    stale = [k for k in CASES if k not in set(_options())]
    assert not stale, f"cases of options that no longer exist: {stale}"


def _argv(command: str, extra: list, fill: dict) -> list:
    if extra and extra[0] == command:  # a whole command line (positionals)
        return [x.format(**fill) for x in extra]
    base = [x.format(**fill) for x in BASE[command]]
    extra = [x.format(**fill) for x in extra]
    out, i = list(base), 0
    while i < len(extra):  # replace an option of BASE, or add it
        opt = extra[i]
        val = extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("--") or (
            i + 1 < len(extra) and extra[i + 1] == "") else None
        if opt in out and val is not None and out.index(opt) + 1 < len(out):
            out[out.index(opt) + 1] = val
        else:
            out += [opt] + ([val] if val is not None else [])
        i += 2 if val is not None else 1
    return out


@pytest.mark.parametrize("key", list(CASES), ids=[f"{c}{o}" for c, o in CASES])
def test_each_bad_value_is_one_line_exit_2_before_anything_loads(key, files, no_loading, capsys):
    command, option = key
    fill = {k: str(v) for k, v in files.items()}
    for extra, words in CASES[key]:
        if CUDA_MISSING in extra and torch.cuda.is_available():
            continue
        argv = _argv(command, extra, fill)
        assert cli.main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1, (argv, err)
        assert err[0].startswith("zoomstudy "), err
        if words is not None:
            assert words in err[0], (argv, err[0])


def test_the_base_command_lines_are_valid(files, no_loading, monkeypatch):
    """The cases' command lines pass validation without their bad value (so each case tests its own)."""
    fill = {k: str(v) for k, v in files.items()}
    parser = cli.build_parser()
    for command in ("sweep", "merge", "reproduce", "profile", "paper"):
        a = parser.parse_args([x.format(**fill) for x in BASE[command]])
        a.validate(a)


def test_profile_check_exit_codes(files, tmp_path, capsys):
    """0: within the thresholds, 1: a regression, 2: a file that is no profile summary."""
    good = tmp_path / "profile.json"
    good.write_text(json.dumps({"metrics": {"oracle_gap": 5.0, "center_bias": 1.0}}))
    assert cli.main(["profile", "--check", str(good), "--max-oracle-gap", "10"]) == 0
    assert cli.main(["profile", "--check", str(good), "--max-oracle-gap", "1"]) == 1
    assert cli.main(["profile", "--check", str(files["true_metric"]), "--max-oracle-gap", "1"]) == 2


def test_a_registered_scheme_is_opened_and_checked_by_name(files, monkeypatch):
    """Study and CLI name no scheme: a name registered by a later stage (as the experiment registers
    "world:") is routed, checked and opened through the registries of data.registry and models.loading."""
    from zoomstudy.data import registry
    from zoomstudy.models import loading

    monkeypatch.setattr(registry, "DATA_SCHEMES", dict(registry.DATA_SCHEMES))
    monkeypatch.setattr(loading, "MODEL_SCHEMES", dict(loading.MODEL_SCHEMES))
    opened = []
    registry.register_data_scheme("toy", lambda text, root, **kw: opened.append((text, root, kw)) or "a source",
                                  label_space=lambda record: "toy-3" if record.get("name") == "toy:3" else None)
    loading.register_model_scheme("toy", lambda spec, device=None, **kw: ("a model", spec, kw))
    assert study.check_data("toy:3").kind == "scheme" and study.open_data("toy:3", "R", n=2) == "a source"
    assert opened == [("toy:3", "R", {"n": 2})]
    assert study.open_model("toy:big", seed=1) == ("a model", "toy:big", {"seed": 1})
    study.check_model_name("toy:big")  # no loader knows "toy": the registry does
    assert registry.scheme_label_space({"name": "toy:3"}) == "toy-3"
    assert "toy:" in str(pytest.raises(ValueError, study.check_data, "nothing-of-that-name").value)
    for taken in ("imagenet-val", "csv"):
        with pytest.raises(ValueError, match="already"):
            registry.register_data_scheme(taken, lambda *a, **k: None)
    with pytest.raises(ValueError, match="already"):
        loading.register_model_scheme("timm", lambda *a, **k: None)
    parser = cli.build_parser()
    fill = {k: str(v) for k, v in files.items()}
    a = parser.parse_args([x.format(**fill) for x in BASE["sweep"]] + ["--dataset", "toy:3", "--model", "toy:big"])
    a.validate(a)  # accepted without a loader or a folder
