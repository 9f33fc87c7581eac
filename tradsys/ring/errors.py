"""Errors of the ring layer. Each names the segment and what was wrong with it."""


class RingError(Exception):
    """Base of every error raised by ``tradsys.ring``."""


class RingAttachError(RingError):
    """A segment is missing or is not the ring the caller expects."""


class SegmentExistsError(RingError):
    """A segment of that name already exists and its creator is still alive."""
