"""The project's own exception types.

Every user-facing failure is an :class:`IslError` whose message is one sentence a user can act
on, naming the file or object and what is wrong. The CLI prints that sentence and exits 1; a
batch turns it into an ``error`` row and goes on.
"""


class IslError(Exception):
    """A failure the user can act on; ``str(err)`` is the sentence to show them."""


class InputError(IslError):
    """Bad or unsupported input data: a file, a series or an image folder."""


class BundleError(IslError):
    """A model bundle that is missing, changed, or of an unknown format version."""


class ExtensionError(IslError):
    """A compiled extension (isl_rt._native or isl_rt._cuda) that is missing or failed to load."""


class BackendError(IslError):
    """An inference backend that cannot be loaded or run here."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (multi-line library reports joined), without a final
    stop, at most 300 characters; the exception's type name when it has no message."""
    text = " ".join(str(err).split()).rstrip(".")
    if len(text) > 300:
        text = text[:297] + "..."
    return text or type(err).__name__
