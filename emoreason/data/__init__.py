"""Datasets: one sample schema for every corpus, adapters for their annotation formats, and synthesis."""


class DataError(ValueError):
    """A dataset, annotation or sample file cannot be used; the message says which file (and line) and why."""
