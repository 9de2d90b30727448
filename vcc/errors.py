"""The one exception type every stage raises for bad input.

The CLI turns a :class:`VccError` into a one-line message on stderr and exit code 2.
"""


class VccError(Exception):
    """Bad input or an unsupported model: the message names the file, node, op or shape at fault."""
