"""The one exception type every stage raises for bad input.

The CLI turns a :class:`VccError` into a one-line message on stderr and exit code 2.
"""


class VccError(Exception):
    """Bad input or an unsupported model: the message names the file, node, op or shape at fault."""


class BudgetNotMet(VccError):
    """An accuracy budget (`--max-drop`) that no precision assignment met: exit code 1, as a failed
    accuracy gate, not 2 (the input was valid)."""

    exit_code = 1
