"""README command 1, as written in README.md (its `pip install -e . && ` left out), run by bash
in a fresh folder with `../shared` beside it, `vcc` on PATH being this checkout's CLI; the files
it promises exist, its last line holds the int8-vs-fp32 figures, the reports render in headless
Chromium. The trained weights come from the cache under $VCC_CACHE (~/.cache/vcc) when there,
as for a user: the first run on a machine trains (about a minute on 2 cores)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_accuracy_report import render_in_chromium

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "pip install -e . && "


def readme_command_1() -> str:
    """The first indented command of README.md's "Two commands" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = [line[4:] for line in section.splitlines() if line.startswith("    ") and line.strip()]
    assert commands, "README.md: no indented command under '## Two commands'"
    assert commands[0].startswith(INSTALL), commands[0]
    return commands[0][len(INSTALL):]


def test_readme_command_1_is_the_headline_job():
    cmd = readme_command_1()
    for part in ("vcc export person --train", "--dtype int8", "--calib ", "--eval ", "--overlay ",
                 "vcc compare ", "--out person-compare", "vcc summary "):
        assert part in cmd, part


@pytest.mark.slow
def test_readme_command_1_runs_as_written(data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(data.resolve().parent, target_is_directory=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vcc"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vcc.driver.cli "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env.pop("VCC_DATA", None)  # the command's own ../shared/data
    proc = subprocess.run(["bash", "-c", readme_command_1()], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    assert "held-out person IoU" in proc.stderr

    art = work / "person-int8"
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["dtype"] == "int8"
    assert {"model.so", "calibration.json", "calibration.html", "accuracy.json", "accuracy.html"} <= set(manifest["files"])
    for f in ("person.onnx", "person-compare/accuracy.json", "person-compare/accuracy.html"):
        assert (work / f).is_file(), f
    # the build's report scores the 50 held-out photos against their masks
    acc = json.loads((work / "person-compare" / "accuracy.json").read_text())
    assert acc["labels"]["dataset"] == "binary" and acc["labels"]["images"] == 50
    assert acc["miou_ref"] > 0.6, acc["miou_ref"]  # a trained net, not a seeded one

    photo = Image.open(data / "images" / "human_seg_vikram" / "images" / "289.jpg")
    mask = np.asarray(Image.open(work / "mask.png"))
    assert mask.shape == (160, 160) and set(np.unique(mask)) == {0, 1}
    overlay = Image.open(work / "overlay.png")
    assert overlay.size == photo.size

    # the last lines: the reports, the PNGs and the int8-vs-fp32 figures
    lines = proc.stdout.strip().splitlines()
    assert lines[-3].split() == ["reports:", "person-int8/calibration.html", "person-int8/accuracy.html",
                                 "person-compare/accuracy.html"], lines[-3:]
    assert lines[-2].split() == ["images:", "mask.png", "overlay.png"]
    figures = lines[-1]
    assert figures.startswith("int8 vs fp32 on 50 photos: argmax agreement "), figures
    agreement = float(re.search(r"agreement ([\d.]+)%", figures).group(1))
    assert agreement >= 99.0, figures

    for html in (art / "calibration.html", art / "accuracy.html", work / "person-compare" / "accuracy.html"):
        shots = tmp_path / f"render-{html.parent.name}-{html.stem}"
        shots.mkdir()
        png, dom = render_in_chromium(html, shots)
        arr = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
        assert np.any(arr < 235, axis=2).mean() > 0.03 and arr.std() > 20, f"{html}: blank screenshot"
        found = re.search(r'data-images-ok="(true|false):(\d+)"', dom)
        assert found and found.group(1) == "true", (html, found and found.group(0))
        assert "<svg" in dom or int(found.group(2)) > 0, f"{html}: no plots"
