"""The C++ runtime (CMakeLists.txt, libvcc_runtime, vcc_run), `vcc deploy` and find_package(vcc).

Built once per session with CMake into a temporary folder. Two zoo models (unet_mobilenetv2,
hrnetv2_w18_small_v1) at 64x64, fp32 and int8 (4 calibration photos), built in this process.
`vcc_run` must give outputs bit-identical to Python's predictor (what `vcc run --input` runs)
on the same .npy; on photos its preprocessed tensor must equal `vcc.calib.images.load_image`'s
bit for bit (the C++ reproduces Pillow's BILINEAR resize) and its mask PNG must decode to the
same class ids and palette as `vcc run`'s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcc.calib.images import load_image
from vcc.runtime import load

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("unet_mobilenetv2", "hrnetv2_w18_small_v1")
PHOTOS = "human_seg_vikram/images"


def sh(*cmd, check: int | None = 0, env=None, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    if check is not None and proc.returncode != check:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}, expected {check}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("cpp") / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    sh("cmake", "-S", ROOT, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release", f"-DPython3_EXECUTABLE={sys.executable}")
    sh("cmake", "--build", build)
    assert (build / "vcc_run").is_file() and (build / "libvcc_runtime.so").is_file()
    return build


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, data) -> dict[tuple[str, str], Path]:
    from vcc.driver.build import BuildConfig, build
    from vcc.frontends.zoo.export import export_zoo_model

    root = tmp_path_factory.mktemp("arts")
    out = {}
    for name in MODELS:
        onnx = export_zoo_model(name, root / f"{name}.onnx", None, (64, 64), None)
        for dtype in ("fp32", "int8"):
            calib = data / "images" / PHOTOS if dtype == "int8" else None
            cfg = BuildConfig(model=onnx, out=root / f"{name}-{dtype}", dtype=dtype, calib=calib, num_calib=4)
            out[name, dtype] = build(cfg, progress=lambda _m: None).out
    return out


def photos(data, n=2) -> list[Path]:
    return sorted((data / "images" / PHOTOS).glob("*.jpg"))[:n]


def same_png(a: Path, b: Path) -> None:
    ia, ib = Image.open(a), Image.open(b)
    assert ia.mode == ib.mode == "P"
    assert ia.getpalette() == ib.getpalette()
    np.testing.assert_array_equal(np.asarray(ia), np.asarray(ib))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_vcc_run_npy_bit_identical_to_python(name, dtype, artifacts, cpp_build, tmp_path):
    art = artifacts[name, dtype]
    assert json.loads((art / "manifest.json").read_text())["dtype"] == dtype
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = sh(cpp_build / "vcc_run", art, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert "wrote" in proc.stderr
    y = np.load(tmp_path / "y.npy")
    ref = load(art)(x)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    assert np.array_equal(y, ref), f"max abs diff {np.abs(y - ref).max()}"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_vcc_run_photo_same_tensor_and_mask_as_python(name, artifacts, cpp_build, data, tmp_path, cli):
    for dtype in ("fp32", "int8"):
        art = artifacts[name, dtype]
        pred = load(art)
        for i, photo in enumerate(photos(data)):
            mask, xin = tmp_path / f"{dtype}{i}.png", tmp_path / f"{dtype}{i}.npy"
            sh(cpp_build / "vcc_run", art, photo, "-o", mask, "--save-input", xin)
            x = load_image(photo, pred.preprocess)
            assert np.array_equal(np.load(xin), x)  # Pillow's resize reproduced bit for bit
            ref = tmp_path / f"{dtype}{i}-py.png"
            if i == 0:  # the command line itself, once per artifact
                cli("run", art, photo, "-o", ref, check=0)
            else:
                from vcc.reports.palette import save_mask

                save_mask(pred(x)[0].argmax(0), ref)
            same_png(mask, ref)


@pytest.mark.slow
def test_vcc_run_refuses_bad_input_with_exit_2(artifacts, cpp_build, data, tmp_path):
    good = artifacts["unet_mobilenetv2", "fp32"]
    run = cpp_build / "vcc_run"
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 64, 64), np.float32))

    def refused(art, *args, says: str):
        proc = sh(run, art, *args, check=2)
        assert says in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr

    tampered = tmp_path / "tampered"
    shutil.copytree(good, tampered)
    with open(tampered / "model.so", "r+b") as f:
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 1]))
    refused(tampered, "--input", tmp_path / "x.npy", says="artifact file model.so was altered")
    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    text = (truncated / "manifest.json").read_text()
    (truncated / "manifest.json").write_text(text[: len(text) // 2])
    refused(truncated, "--bench", says="manifest.json: corrupt manifest")
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 32, 64), np.float32))
    refused(good, "--input", tmp_path / "wrong.npy", says="expects float32[1, 3, 64, 64], got float32[1, 3, 32, 64]")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    refused(good, tmp_path / "broken.jpg", says="broken.jpg: cannot read the image")
    refused(tmp_path / "nowhere", "--bench", says="no such artifact directory")
    proc = sh(run, good, "--bench", "--runs", "3", "--threads", "1", "--json")
    bench = json.loads(proc.stdout)
    assert bench["runs"] == 3 and bench["median_ms"] > 0 and bench["p90_ms"] >= bench["median_ms"]


@pytest.mark.slow
def test_deploy_bundle_runs_without_python_and_links_via_find_package(artifacts, cpp_build, data, tmp_path, cli):
    art = artifacts["hrnetv2_w18_small_v1", "int8"]
    proc = cli("deploy", art, "--out", tmp_path / "bundle", "--build-dir", cpp_build, check=0)
    assert "wrote" in proc.stderr
    # a copy in another folder, with an empty environment (no PYTHONPATH, no LD_LIBRARY_PATH)
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(tmp_path / "bundle", moved, symlinks=True)
    shutil.rmtree(tmp_path / "bundle")
    assert len((moved / "README").read_text().strip().splitlines()) == 3
    assert (moved / "include" / "vcc" / "runtime.hpp").is_file()
    ldd = sh("ldd", moved / "bin" / "vcc_run").stdout
    assert "python" not in ldd.lower() and "not found" not in ldd, ldd
    assert str(moved / "bin" / ".." / "lib" / "libtvm_runtime.so") in ldd, ldd
    photo = photos(data, 1)[0]
    sh("env", "-i", moved / "bin" / "vcc_run", moved / "model", photo, "-o", tmp_path / "bundle.png", cwd="/")
    cli("run", art, photo, "-o", tmp_path / "py.png", check=0)
    same_png(tmp_path / "bundle.png", tmp_path / "py.png")
    # a project of its own that links the bundle's package
    cons = tmp_path / "consumer"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    sh("cmake", "-S", ROOT / "tests" / "cpp_consumer", "-B", cons, *gen, f"-DCMAKE_PREFIX_PATH={moved}")
    sh("cmake", "--build", cons)
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out = sh(cons / "consumer", moved / "model", tmp_path / "x.npy", tmp_path / "y.npy", env=env).stdout
    assert out.startswith("input 1 3 64 64 ->")
    assert np.array_equal(np.load(tmp_path / "y.npy"), load(art)(x))
