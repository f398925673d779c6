"""MOFGSeg in JAX: semi-supervised semantic segmentation for fine-grained classes."""

import os

__version__ = "0.1.0"

# XLA:CPU settings this package asks for, each unless XLA_FLAGS already names the flag. XLA reads
# XLA_FLAGS when it first compiles, so this must run before that: it does, as every module of the
# package is imported through here. Neither flag changes GPU/TPU compilation. Measured on the 2-core
# CI machine, MiT-B0 crop 256, 2+2 images:
CPU_FLAG_DEFAULTS = {
    # The default concurrency-optimised op order runs independent ops side by side and so keeps more
    # activations alive; on a few cores it buys nothing. semi step: XLA temporaries 950 -> 437 MB,
    # peak host RSS 2.08 -> 1.66 GB, the step no slower.
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
    # YNNPACK runs a 3x3 convolution's weight gradient at ~170 GFLOP/s; without YNNPACK for
    # convolutions XLA's own (Eigen) kernel takes 32 ms instead of 57 for the boundary module's
    # 256-channel conv at stride 4, forward and input gradient unchanged. sup step 0.316 -> 0.276 s,
    # semi 0.671 -> 0.649 s. ('-' removes one fusion type from XLA's default set.)
    "--xla_cpu_experimental_ynn_fusion_type": "-individual_convolution",
}


def _apply_cpu_flag_defaults() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    for flag, value in CPU_FLAG_DEFAULTS.items():
        if flag not in flags:
            flags = f"{flags} {flag}={value}".strip()
    os.environ["XLA_FLAGS"] = flags


_apply_cpu_flag_defaults()
