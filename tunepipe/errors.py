"""The one exception type a user should see without a traceback."""


class PipelineError(Exception):
    """Bad input or a failed check: the message names the file, row or field at fault."""
