"""Errors raised for unusable media."""


class MediaError(ValueError):
    """A media file is missing, empty, unreadable or not a video/image; the message says which and why."""
