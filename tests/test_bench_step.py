"""The step, eval, losses and peak benchmarks run end to end at a toy size and report what issue 8 asks for."""

import argparse
import importlib.util

import jax
import pytest

from mofgseg_jax.bench import eval as eval_bench
from mofgseg_jax.bench import losses as losses_bench
from mofgseg_jax.bench import peak as peak_bench
from mofgseg_jax.bench import step as step_bench


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """Toy programs: skip most XLA optimisation passes (part of the jit cache key, nothing leaks)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def step_report():
    """One toy step benchmark for the tests below (each compile costs ~half a minute on 2 cores):
    the semi step and the reference-equivalent segformer step (sup runs the same code path as
    segformer plus the boundary module), with the Hugging Face reference when transformers is here."""
    have_reference = importlib.util.find_spec("transformers") is not None
    return step_bench.run(["--smoke", "--crop", "32", "--classes", "3", "--iters", "3", "--warmup", "1",
                           "--modes", "semi,segformer"]
                          + ([] if have_reference else ["--no-reference"]))


def test_step_benchmark_reports_timings_flops_and_memory(step_report):
    r = step_report
    assert r["config"]["crop"] == 32 and r["config"]["dtype"] == "float32"
    # Without the boundary module, the representation head and the unlabelled branch, far fewer FLOPs.
    assert r["segformer_step"]["flops_per_image"] < 0.5 * r["semi_step"]["flops_per_image"]
    for mode, images in (("semi", 4), ("segformer", 2)):
        t = r[f"{mode}_step"]
        assert 0 < t["median_s"] <= t["p90_s"] and t["compile_s"] > 0 and t["cpu_median_s"] > 0
        assert t["images_per_step"] == images and t["images_per_s"] > 0
        assert t["flops_per_image"] > 0 and t["timed_iters"] == 3
        assert len(t["round_median_s"]) == t["rounds"] == 3  # --iters 3 caps the default 10 rounds
    assert r["peak_after"]["peak_host_rss_mb"] >= r["ours_peak"]["peak_host_rss_mb"] > 0


def test_eval_benchmark_reports_throughput_and_counts_every_window():
    def run(height):
        return eval_bench.run(["--smoke", "--crop", "32", "--pad", "48", "--height", str(height), "--classes", "3",
                               "--iters", "2", "--warmup", "1"])

    r = run(40)
    assert r["config"]["mode"] == "sliding_window" and r["config"]["models"] == 2
    assert 0 < r["median_s"] <= r["p90_s"] and r["images_per_s"] > 0 and r["compile_s"] > 0
    # Stride int(32 * 2/3) = 21: windows start at rows 0, 21 (< 40) and columns 0, 21, 42 (< 48): 6.
    # At height 16 only row 0 runs: 3. XLA's own count would be the same for both (the loop's body
    # counts once), so the FLOPs must follow the windows.
    low = run(16)
    assert (r["windows_per_image"], low["windows_per_image"]) == (6, 3)
    assert r["flops_per_call"] == pytest.approx(2 * low["flops_per_call"])
    assert r["flops_per_image_per_model"] == pytest.approx(r["flops_per_call"] / (2 * r["config"]["batch"]))


def test_eval_benchmark_takes_a_height_width_canvas():
    from mofgseg_jax.bench.common import canvas_arg

    assert canvas_arg("48") == (48, 48) and canvas_arg("24x40") == (24, 40) == canvas_arg("24,40")
    for bad in ("0", "24x0", "24x40x3", "abc"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"'{bad}': expected N"):
            canvas_arg(bad)
    r = eval_bench.run(["--smoke", "--mode", "original", "--crop", "32", "--pad", "24x40", "--classes", "3",
                        "--models", "1", "--iters", "1", "--warmup", "1"])
    assert r["config"]["pad"] == [24, 40] and r["config"]["image_hw"] == [24, 40] and r["images_per_s"] > 0


def test_peak_benchmark_reports_rates_that_match_the_flop_counts():
    r = peak_bench.run(["--matmul-size", "64", "--crop", "32", "--dtypes", "float32", "--iters", "2"])
    f32 = r["float32"]
    assert f32["matmul"]["gflop"] == 2 * 64**3 / 1e9
    assert f32["conv3x3_forward"]["gflop"] == 2 * 2 * 8 * 8 * 9 * 320 * 256 / 1e9
    assert f32["conv3x3_forward_backward"]["gflop"] == 3 * f32["conv3x3_forward"]["gflop"]
    # The model's route (Winograd here) is rated in the direct convolution's FLOPs.
    assert f32["conv3x3_model_forward"]["gflop"] == f32["conv3x3_forward"]["gflop"]
    assert f32["conv3x3_model_forward_backward"]["gflop"] == f32["conv3x3_forward_backward"]["gflop"]
    for part in f32.values():
        assert part["gflops_per_s"] == pytest.approx(part["gflop"] / part["median_s"]) and part["median_s"] > 0


def test_step_benchmark_ratio_to_the_reference_is_paired_by_round(step_report):
    pytest.importorskip("transformers")
    r = step_report
    for mode in ("semi", "segformer"):
        ours, ref = r[f"{mode}_step"], r["hf_reference"]
        assert ref["timed_iters"] == ours["timed_iters"] == 3 and len(ref["round_median_s"]) == 3
        per_round = sorted(a / b for a, b in zip(ours["round_median_s"], ref["round_median_s"]))
        assert r[f"{mode}_vs_hf"] == pytest.approx(per_round[1])
        low, high = r[f"{mode}_vs_hf_ci90"]  # resampled rounds: within their ratios' range
        assert per_round[0] - 1e-9 <= low <= r[f"{mode}_vs_hf"] <= high <= per_round[-1] + 1e-9
        assert r[f"{mode}_vs_hf_cpu"] == pytest.approx(ours["cpu_median_s"] / ref["cpu_median_s"])


def test_losses_benchmark_times_the_factored_form_of_the_same_loss():
    r = losses_bench.run(["--batch", "2", "--size", "16", "--classes", "3", "--rep-dim", "16", "--feature-dim", "8",
                          "--queries", "8", "--negatives", "8", "--iters", "1", "--skip-reference",
                          "--skip-other-losses"])
    formed, factored = r["contrastive"], r["contrastive_factored"]
    # The benchmark's representation is the head applied to the features: one loss, two forms.
    assert factored["loss"] == pytest.approx(formed["loss"], rel=1e-5)
    for part in (formed, factored):
        assert part["forward"]["median_s"] > 0 and part["forward_backward"]["median_s"] > 0


def test_step_benchmark_compare_times_an_override_in_the_same_rounds():
    # A/B of a config option inside one process: the variant is its own compiled step (here a
    # narrower boundary module: fewer FLOPs), paired by round with the plain mode.
    r = step_bench.run(["--smoke", "--crop", "32", "--classes", "3", "--iters", "3", "--warmup", "1",
                        "--modes", "sup", "--compare", "model.eam_mid_dim=8", "--no-reference"])
    plain, narrow = r["sup_step"], r["sup[model.eam_mid_dim=8]_step"]
    assert narrow["flops_per_image"] < plain["flops_per_image"]
    assert narrow["timed_iters"] == plain["timed_iters"] == 3
    per_round = sorted(a / b for a, b in zip(narrow["round_median_s"], plain["round_median_s"]))
    assert r["sup[model.eam_mid_dim=8]_vs_sup"] == pytest.approx(per_round[1])
    low, high = r["sup[model.eam_mid_dim=8]_vs_sup_ci90"]
    assert per_round[0] - 1e-9 <= low <= high <= per_round[-1] + 1e-9


@pytest.mark.parametrize("compare,message", [("model.eam_mid_dims=8", "unknown config key 'model.eam_mid_dims'"),
                                             ("model.eam_mid_dim=wide", "model.eam_mid_dim=wide"),
                                             ("eam_mid_dim", "is not KEY=VALUE")])
def test_step_benchmark_compare_rejects_a_bad_override_before_compiling(compare, message, monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before checking --compare")

    monkeypatch.setattr(step_bench, "prepare_ours", no_compile)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        step_bench.run(["--smoke", "--modes", "sup", "--compare", compare, "--no-reference"])


def test_step_benchmark_batch_carries_the_padding_map_that_training_sends():
    # Crop 40 holds two 16-pixel label blocks per side and 8 padded rows/columns of ignore: the
    # 'inside' map is 0 exactly there, as the pipeline's crop padding.
    from mofgseg_jax.train.step import wants_inside_map

    args = step_bench._parse(["--smoke", "--crop", "40", "--classes", "3"])
    labeled = step_bench._batch(args)["labeled"]
    assert labeled["inside"].shape == labeled["label"].shape == (2, 40, 40)
    assert (labeled["inside"][:, :32, :32] == 1).all() and (labeled["inside"][:, 32:] == 0).all()
    assert (labeled["inside"][:, :, 32:] == 0).all() and (labeled["label"][labeled["inside"] == 0] == 255).all()
    assert wants_inside_map(step_bench._config(args, "semi"))  # so the timed step reads it
