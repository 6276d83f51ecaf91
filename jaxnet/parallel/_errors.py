"""The one exception of ``jaxnet.parallel``."""

__all__ = ["DistributedError"]


class DistributedError(ConnectionError):
    """A multi-process run could not start, or lost one of its processes."""


DistributedError.__module__ = "jaxnet.parallel"  # `except jaxnet.parallel.DistributedError`
