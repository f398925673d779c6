"""The interleaved timing behind the step benchmark's ratios: order of calls, counts, paired ratios."""

import numpy as np
import pytest

from mofgseg_jax.bench.common import paired_ratio, paired_ratio_interval, time_interleaved


def test_time_interleaved_alternates_rounds_of_every_call():
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    timing = time_interleaved(calls, rounds=2, iters={"a": 2, "b": 1}, untimed=1)
    # Each round: one untimed call, then the timed ones, of each name in turn.
    assert order == ["a", "a", "a", "b", "b"] * 2
    assert timing["a"]["timed_iters"] == 4 and timing["b"]["timed_iters"] == 2
    for t in timing.values():
        assert t["rounds"] == 2 and len(t["round_median_s"]) == 2
        assert 0 <= t["min_s"] <= t["median_s"] <= t["p90_s"]


def test_timings_report_system_time_and_page_faults_per_call():
    import mmap

    def touch_fresh_pages():  # a new 4 MB anonymous mapping, written page by page: >= 1 fault per page
        block = mmap.mmap(-1, 4 << 20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        block.close()

    timing = time_interleaved({"touch": touch_fresh_pages, "idle": lambda: None}, rounds=1, iters=3)
    touch, idle = timing["touch"], timing["idle"]
    # Huge pages would fault once per 2 MB; the kernel's default for such a mapping is 4 KB pages.
    assert touch["minor_faults_median"] >= 2 and touch["minor_faults_median"] > idle["minor_faults_median"]
    for t in (touch, idle):
        assert 0 <= t["sys_median_s"] <= t["cpu_median_s"] + 0.01


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # Per-round ratios 2, 2.2, 2, 1.8, 2.5 -> 2; the overall medians' ratio would be 2.2 / 1.
    ours = {"round_median_s": [2.0, 2.2, 20.0, 1.8, 5.0]}
    reference = {"round_median_s": [1.0, 1.0, 10.0, 1.0, 2.0]}
    assert paired_ratio(ours, reference) == pytest.approx(2.0)


def test_paired_ratio_interval_covers_the_true_ratio_at_its_level():
    # Simulated runs whose per-round ratios scatter (lognormal, sigma 0.2, as a noisy host's) around a
    # true median of 2.5: a 90% interval must hold it in about 90% of them; [min, max] of the rounds
    # would hold it in ~99.8% at 10 rounds, a too-narrow interval far less often.
    rng = np.random.default_rng(1)

    def runs(rounds, count=200):
        for _ in range(count):
            reference = rng.uniform(0.3, 0.5, rounds)
            ours = reference * 2.5 * np.exp(rng.normal(0.0, 0.2, rounds))
            yield paired_ratio_interval({"round_median_s": list(ours)}, {"round_median_s": list(reference)},
                                        resamples=1000)

    ten = list(runs(10))
    coverage = np.mean([low <= 2.5 <= high for low, high in ten])
    assert 0.82 <= coverage <= 0.97
    # The interval narrows as 1/sqrt(rounds): 40 rounds about halve it.
    width = lambda intervals: np.median([high - low for low, high in intervals])  # noqa: E731
    assert width(runs(40)) < 0.7 * width(ten)


def test_paired_ratio_interval_is_a_point_when_every_round_agrees_and_is_reproducible():
    ours, reference = {"round_median_s": [0.9, 1.2, 0.6]}, {"round_median_s": [0.3, 0.4, 0.2]}
    assert paired_ratio_interval(ours, reference) == pytest.approx([3.0, 3.0])
    noisy = {"round_median_s": [0.9, 1.5, 0.5, 1.1]}
    low, high = paired_ratio_interval(noisy, {"round_median_s": [0.3, 0.4, 0.2, 0.5]})
    assert low <= paired_ratio(noisy, {"round_median_s": [0.3, 0.4, 0.2, 0.5]}) <= high
    assert [low, high] == paired_ratio_interval(noisy, {"round_median_s": [0.3, 0.4, 0.2, 0.5]})


def test_benchmark_json_names_the_code_it_measured():
    from mofgseg_jax.bench.common import code_version, device_info

    version = code_version()
    # A git checkout (tests run from one): an abbreviated commit, with -dirty for local changes.
    assert version is None or version.split("-")[0].isalnum()
    assert device_info()["code_version"] == version


def test_benchmark_json_names_the_host_cpu(tmp_path):
    from mofgseg_jax.bench.common import host_cpu

    cpuinfo = tmp_path / "cpuinfo"
    core = ("processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
            "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n")
    cpuinfo.write_text(core.format(n=0) + "\n" + core.format(n=1).replace("avx2", "avx512f avx2"))
    caches = tmp_path / "cache"
    for index, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "512K"), (3, "Unified", "32768K")]):
        (caches / f"index{index}").mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (caches / f"index{index}" / name).write_text(f"{value}\n")
    # The first processor's entry; only the SIMD flags that pick kernels; unified caches by level.
    assert host_cpu(str(cpuinfo), str(caches)) == {
        "model_name": "AMD EPYC", "family": "25", "model": "1", "simd": ["avx2"],
        "l2_cache": "512K", "l3_cache": "32768K"}
    assert host_cpu(str(tmp_path / "missing"), str(caches)) == {}
    # Every benchmark JSON carries this host's (launch/benchmark.py adds device_info to each).
    from mofgseg_jax.bench.common import device_info

    assert device_info()["host_cpu"] == host_cpu()


def test_benchmark_json_names_a_compilation_cache_in_force(monkeypatch):
    from mofgseg_jax.bench.common import device_info

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert device_info()["compilation_cache_dir"] == ""
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/tmp/some-cache")
    assert device_info()["compilation_cache_dir"] == "/tmp/some-cache"
