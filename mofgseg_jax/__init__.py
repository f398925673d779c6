"""MOFGSeg in JAX: semi-supervised semantic segmentation for fine-grained classes."""

import os

__version__ = "0.1.0"

_CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def _prefer_memory_minimising_cpu_schedule() -> None:
    """Asks XLA:CPU for its memory-minimising op order, unless XLA_FLAGS already decides.

    The default concurrency-optimised order runs independent ops side by side and so keeps more
    activations alive; on a few cores it buys nothing. Measured on the 2-core CI machine, MiT-B0 crop
    256, 2+2 images, semi step: XLA temporaries 950 -> 437 MB, peak host RSS 2.08 -> 1.66 GB, the step
    no slower. XLA reads XLA_FLAGS when it first compiles, so this must run before that: it does, as
    every module of the package is imported through here. No effect on GPU/TPU compilation.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _CPU_SCHEDULER_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_CPU_SCHEDULER_FLAG}=false".strip()


_prefer_memory_minimising_cpu_schedule()
