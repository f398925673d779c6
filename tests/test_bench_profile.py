"""The profiling helper finds the costliest XLA op of a traced function and names its source."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from mofgseg_jax.bench.profile import top_ops, trace_steps


def test_top_ops_names_the_dominant_op_and_where_it_came_from(tmp_path):
    def heavy_then_light(a, b):
        product = jnp.dot(a, b)  # ~2 GFLOP: dominates the elementwise op below
        return jnp.tanh(product[:1, :1])

    a = jnp.asarray(np.random.RandomState(0).randn(1024, 1024), jnp.float32)
    compiled = jax.jit(heavy_then_light).lower(a, a).compile()
    trace = trace_steps(lambda: compiled(a, a), str(tmp_path), steps=2)
    ops = top_ops(trace, compiled, steps=2, count=5)
    # The runtime's own entries (executable launch, no HLO source) may rank anywhere: a page-faulting
    # first call once put one above the dot. The costliest op of the program is the dot.
    program_ops = [op for op in ops if op["source"]]
    assert program_ops and program_ops[0]["ms"] > 0 and program_ops[0]["calls"] == 1, ops
    assert "dot" in program_ops[0]["source"], ops
    # Its shapes: the [1024, 1024] result of two [1024, 1024] operands (a fusion or a dot).
    assert re.fullmatch(r"f32\[1024,1024\] \w+\(f32\[1024,1024\], f32\[1024,1024\]\)",
                        program_ops[0]["shapes"]), ops


def test_module_of_names_the_pass_and_the_model_module():
    from mofgseg_jax.bench.profile import module_of

    assert module_of("jit(body)/transpose(jvp(MOFGSeg))/boundary/block1/conv/conv_general_dilated") == \
        "backward boundary/block1"
    assert module_of("jit(body)/jvp(MOFGSeg)/decode_head/representation/dot_general") == \
        "forward decode_head/representation"
    assert module_of("jit(body)/jvp()/while/body/closed_call/gather") == "forward while/body"
    assert module_of("") == "(no source)"
