"""The runtime's one exception for problems a user can fix; the CLI prints it as one line."""


class EdgeError(Exception):
    """A bad source, URL, backend choice or out folder: the message says what and where."""
