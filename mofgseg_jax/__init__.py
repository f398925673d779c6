"""MOFGSeg in JAX: semi-supervised semantic segmentation for fine-grained classes."""

__version__ = "0.1.0"
