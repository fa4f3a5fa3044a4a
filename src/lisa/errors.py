"""Errors caused by the user's input: the CLI prints them as one line, without a traceback."""


class LisaError(Exception):
    """Something the user gave (a path, a file, a flag, a checkpoint) is wrong; the message says what to do."""
