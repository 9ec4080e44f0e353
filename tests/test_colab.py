"""What a Colab user does first, end to end, against the local hub stand-in (the `hub` fixture):

a fresh virtual environment that has torch & co. (`--system-site-packages`, as Colab has them) but no
zoomstudy; the package installed by the notebooks' own install cell from a wheel built here (pointed
to by ZOOMSTUDY_PIP_SPEC); then "run all" of notebooks 01 and 04 with profile = "quick" (ResNet-18 V1
weights from a pre-seeded TORCH_HOME under torchvision's real file name, ImageNet-Hard from the hub
stand-in at the pinned commit), small by parameter overrides (3 images, 4 scales at crop 112). And the
README's public-API example in the same environment, made small the same way (ResNet-18 for ResNet-50,
2 images, crop 112).

The machine's own development install of zoomstudy (an editable install, whose .pth file every
`--system-site-packages` venv would process) is masked inside the venv, so that `import zoomstudy`
there fails until the install cell has run, and what runs is the wheel's copy.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

PIN = "32bfa94dcd95e7c3bbe09fa281f5b89870921745"
#: 4 scales x 3 x 3 = 36 views (notebook 01's top-36) at crop 112, the 1-crop view (128 = 112 * 256 / 224) among
#: them: the paper's transform at a quarter of the pixels, so that a CPU test runs the notebooks in minutes
SCALES, CROP = [80, 112, 128, 160], 112


def _run(cmd, env, cwd, timeout=600):
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd[:4]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


@pytest.fixture(scope="module")
def colab(tmp_path_factory, hub):
    """(venv python, base env, work folder, wheel) with zoomstudy not importable yet."""
    import torch
    import torchvision

    tmp = tmp_path_factory.mktemp("colab")
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("zoomstudy-*.whl")
    venv = tmp / "venv"
    # --without-pip: the interpreter's own pip (a system package) installs into the venv; a venv-local pip
    # would bring an old setuptools that shadows the one torch requires
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # mask the host's editable install(s) of zoomstudy: its .pth imports a finder module and calls install();
    # a module of that name registered first, with an install() that does nothing, leaves zoomstudy unfindable
    system_site = Path(sysconfig.get_paths()["purelib"])
    finders = sorted(p.stem for p in system_site.glob("__editable__*zoomstudy*finder.py"))
    (site / "000_mask_host_zoomstudy.pth").write_text(
        "import sys, types; " + "; ".join(f"sys.modules.setdefault({f!r}, types.SimpleNamespace(install=lambda: None))"
                                          for f in finders) + "\n" if finders else "\n")
    torch_home = tmp / "torch"
    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)  # random weights under the real file name: torchvision loads them without a download
    torch.save(torchvision.models.resnet18().state_dict(),
               ckpt / os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ZOOMSTUDY_", "JUPYTER", "VIRTUAL_ENV"))}
    env.update({"TORCH_HOME": str(torch_home), "ZOOMSTUDY_PIP_SPEC": str(wheel), "PIP_NO_INDEX": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "2"})
    work = tmp / "work"
    work.mkdir()
    r = subprocess.run([str(py), "-c", "import zoomstudy"], env=env, cwd=work, capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'zoomstudy'" in r.stderr, "the venv must start without zoomstudy"
    # the notebooks' kernel is this venv's interpreter (the user's kernelspec may name another python)
    _run([str(py), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "zoomstudy-colab"], env, work)
    return py, env, work, wheel, site


def _hard_gets(hub):
    return sorted(p for p in hub.fetched("taesiri/imagenet-hard") if p.endswith(".parquet"))


@pytest.mark.slow
def test_colab_install_cell_then_notebooks_01_and_04_quick(colab, hub, tmp_path):
    py, env, work, wheel, site = colab
    env = {**env, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    hub.requests.clear()
    overrides = json.dumps({"profile": "quick", "max_images": 3, "scales": SCALES, "crop": CROP, "device": "cpu"})
    for nb in ("01_oracle_accuracy", "04_imagenet_hard"):
        _run([str(py), "-m", "papermill", str(REPO / "notebooks" / f"{nb}.ipynb"), str(tmp_path / f"{nb}.ipynb"),
              "-k", "zoomstudy-colab", "-y", overrides, "--cwd", str(work), "--no-progress-bar"], env, work)
    # the install cell installed the wheel into the venv, and that copy is what imports there
    assert list(site.glob("zoomstudy-*.dist-info"))
    r = _run([str(py), "-c", "import zoomstudy; print(zoomstudy.__file__)"], env, work)
    assert r.stdout.strip() == str(site / "zoomstudy" / "__init__.py")
    # ImageNet-Hard: one parquet file of nine fetched, for both notebooks (04 reuses 01's sweep)
    assert _hard_gets(hub) == [sorted(hub.hard_files)[0]]
    (settings,) = [json.loads(p.read_text()) for p in (work / "results" / "quick").glob("*/settings.json")]
    data = settings["key"]["dataset"]
    assert data["resolved_revision"] == PIN and data["hub_rows"] == 10980
    assert settings["key"]["model"]["weights_id"] == "ResNet18_Weights.IMAGENET1K_V1"
    out04 = (tmp_path / "04_imagenet_hard.ipynb").read_text()
    assert f"revision {PIN}" in out04 and "3 of 10980 images" in out04


@pytest.mark.slow
def test_readme_public_api_example(colab, hub, tmp_path):
    """The README's example (ImageNet-Hard from the hub stand-in, weights from TORCH_HOME), made small for
    a CPU test: ResNet-18 for ResNet-50, 2 images for 300, the compact scales at crop 112."""
    py, env, work, wheel, site = colab
    readme = (REPO / "README.md").read_text()
    m = re.search(r"### The public API.*?```python\n(.*?)```", readme, re.S)
    code = m.group(1)
    assert "max_images=300" in code
    assert '"resnet50"' in code and 'scales="compact"' in code
    code = (code.replace("max_images=300", "max_images=2").replace('"resnet50"', '"resnet18"')
            .replace('scales="compact"', 'scales="compact", crop=112'))
    code += "\nprint(json.dumps({'rows': len(rs.images()), 'data': rs.settings['key']['dataset'], 'figures': type(figures).__name__}))\n"
    env = {**env, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], env, work)  # whichever test runs first
    hub.requests.clear()
    r = _run([str(py), "-c", "import json\n" + code], env, tmp_path)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rows"] == 2 and out["data"]["resolved_revision"] == PIN and out["data"]["hub_rows"] == 10980
    assert _hard_gets(hub) == [sorted(hub.hard_files)[0]]
    assert "downloading 1 parquet file(s)" in r.stderr and "of taesiri/imagenet-hard@32bfa94" in r.stderr
