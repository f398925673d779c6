"""The one exception type for bad dataset inputs (files, lists, masks)."""

from mofgseg_jax.errors import InputError


class DataError(InputError):
    """A dataset input is wrong; the message names the file (and list line) and what is wrong."""
