"""EMA teacher update against a hand-written NumPy EMA (the train step's EMA is in test_train_step)."""

import numpy as np

from mofgseg_jax.train.ema import ema_decay, update_teacher


def test_decay_is_min_of_warmup_and_cap():
    assert [round(float(ema_decay(t, 0.99)), 6) for t in (0, 1, 3, 99, 500)] == [0.0, 0.5, 0.75, 0.99, 0.99]


def _students(k, seed=0):
    rs = np.random.RandomState(seed)
    return [({"w": rs.randn(3, 2).astype(np.float32)}, {"mean": rs.randn(2).astype(np.float32)}) for _ in range(k)]


def test_teacher_after_k_updates_equals_hand_computed_ema():
    cap, k = 0.6, 6
    students = _students(k)
    teacher = {"params": {"w": np.zeros((3, 2), np.float32)}, "batch_stats": {"mean": np.ones(2, np.float32)}}
    ref_w, ref_m = teacher["params"]["w"].astype(np.float64), teacher["batch_stats"]["mean"].astype(np.float64)
    for t, (p, s) in enumerate(students):
        teacher = update_teacher(teacher, p, s, t, cap=cap)
        d = min(1 - 1 / (t + 1), cap)
        ref_w = d * ref_w + (1 - d) * p["w"]
        ref_m = d * ref_m + (1 - d) * s["mean"]
    np.testing.assert_allclose(np.asarray(teacher["params"]["w"]), ref_w, atol=1e-6)
    np.testing.assert_allclose(np.asarray(teacher["batch_stats"]["mean"]), ref_m, atol=1e-6)


def test_first_update_copies_the_student():
    (p, s), = _students(1)
    teacher = {"params": {"w": np.zeros((3, 2), np.float32)}, "batch_stats": {"mean": np.zeros(2, np.float32)}}
    out = update_teacher(teacher, p, s, 0, cap=0.99)
    np.testing.assert_array_equal(np.asarray(out["params"]["w"]), p["w"])


def test_published_flag_keeps_teacher_batch_stats_at_init():
    teacher = {"params": {"w": np.zeros((3, 2), np.float32)}, "batch_stats": {"mean": np.ones(2, np.float32)}}
    for t, (p, s) in enumerate(_students(3)):
        teacher = update_teacher(teacher, p, s, t, cap=0.99, average_batch_stats=False)
    np.testing.assert_array_equal(np.asarray(teacher["batch_stats"]["mean"]), np.ones(2, np.float32))
    assert not np.allclose(np.asarray(teacher["params"]["w"]), 0.0)
