"""The one exception type for bad dataset inputs (files, lists, masks)."""


class DataError(ValueError):
    """A dataset input is wrong; the message names the file (and list line) and what is wrong."""
