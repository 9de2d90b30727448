"""One loaded artifact shared by many threads gives the sequential results, fp32 and int8.

The subject is unet_mobilenetv2 at 64x64 (the seeded HRNet maps every input to nearly the same
logits, which would not show outputs swapped between threads). Before the predictor held a
lock, 4 threads x 20 calls on one HRNet artifact failed most calls (`Check failed: reg <
frame->register_file.size()`, mismatched-argument TypeErrors) or segfaulted.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import vcc.runtime
from vcc.driver.build import BuildConfig, build
from vcc.frontends.zoo.export import export_zoo_model

THREADS, CALLS = 8, 50


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory):
    return export_zoo_model("unet_mobilenetv2", tmp_path_factory.mktemp("m") / "unet.onnx", None, (64, 64), None)


def _hammer(predictor, inputs):
    """THREADS threads, each CALLS calls cycling through `inputs` from its own offset."""
    results: dict[int, list] = {t: [] for t in range(THREADS)}
    errors = []

    def work(t):
        try:
            for k in range(CALLS):
                i = (t + k) % len(inputs)
                results[t].append((i, predictor(inputs[i])))
        except Exception as e:  # collected, so one failure does not hide the others
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results, errors


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_shared_predictor_is_thread_safe(dtype, zoo_onnx, tmp_path, data):
    calib = data / "images" / "cityscapes_espnet_fullres"
    cfg = BuildConfig(model=zoo_onnx, out=tmp_path / dtype, dtype=dtype,
                      **({"calib": calib, "num_calib": 4, "calib_method": "minmax"} if dtype == "int8" else {}))
    build(cfg)
    predictor = vcc.runtime.load(tmp_path / dtype)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(predictor.input["shape"]).astype(np.float32) for _ in range(4)]
    sequential = [predictor(x) for x in inputs]
    assert not np.array_equal(sequential[0], sequential[1])  # distinct inputs give distinct outputs
    results, errors = _hammer(predictor, inputs)
    assert not errors, errors[:3]
    assert sum(len(r) for r in results.values()) == THREADS * CALLS
    for t, calls in results.items():
        for i, y in calls:
            assert np.array_equal(y, sequential[i]), f"thread {t}: input {i} differs from the sequential result"
