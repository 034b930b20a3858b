"""Errors that carry a message meant for the user.

Raise :class:`InputError` (or a subclass) for anything wrong with what the user gave us: a missing file,
a mesh without colours, an image without a mask. The CLI prints it as one line without a traceback, and
the server turns it into an ``error`` reply with code ``bad_input``; anything else is a bug and keeps its
traceback.

Cancellation is the one exception shared with the add-on: :class:`CancelledError` is
:class:`avatex_core.progress.Cancelled`, what :meth:`avatex_core.progress.Progress.check` raises.
"""

from avatex_core.progress import Cancelled


class AvatexError(Exception):
    """Base class of the errors avatex raises on purpose."""

    code = "error"


class InputError(AvatexError, ValueError):
    """Bad user input: the message names what is wrong and, where possible, how to fix it."""

    code = "bad_input"


class NotAvailableError(AvatexError):
    """An optional capability is missing (a package, CUDA, model weights on disk)."""

    code = "not_available"


CancelledError = Cancelled
"""A long job stopped because someone asked it to (code ``cancelled``)."""
