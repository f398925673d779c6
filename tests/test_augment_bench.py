"""The augment benchmark runs end to end at a toy size, and its PIL reference keeps the invariants."""

import random

import numpy as np

from mofgseg_jax.bench import augment as bench


def test_pil_reference_keeps_shapes_and_label_invariants():
    rng = np.random.default_rng(0)
    image = rng.random((20, 24, 3), dtype=np.float32)
    label = rng.integers(0, 5, (20, 24)).astype(np.int32)
    conf = rng.uniform(0.1, 1.0, (20, 24)).astype(np.float32)
    for seed in range(5):
        out_im, out_lb, out_cf = bench.pil_perturb_sample(random.Random(seed), image, label, conf)
        assert out_im.shape == image.shape and out_lb.shape == label.shape and out_cf.shape == conf.shape
        assert set(np.unique(out_lb)) <= set(range(5)) | {255}
        np.testing.assert_array_equal(out_cf == 0, out_lb == 255)


def test_benchmark_run_reports_both_sides():
    result = bench.run(["--size", "16", "--batch_sizes", "2", "--iters", "2", "--ref_iters", "1",
                        "--rounds", "1"])
    timings = result["batch2"]
    assert timings["jax_median_s"] > 0 and timings["pil_median_s"] > 0 and timings["speedup_vs_pil"] > 0
