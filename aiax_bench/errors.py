"""Errors that tell the user what went wrong, where, and what to do.

Every error raised on purpose by aiax-bench derives from :class:`AiaxError`;
its message is one line, and the CLI prints it without a traceback.
"""

from __future__ import annotations

__all__ = ["AiaxError", "InputError", "StoreError", "UnknownNameError"]


class AiaxError(Exception):
    """Base class of the errors aiax-bench raises deliberately.

    An error raised in a worker process (a parallel build, a study's workers) is pickled back to the caller
    whole, whatever its subclass's constructor: the default pickling would call the constructor with the
    message alone, and fail.
    """

    def __reduce__(self) -> tuple:
        return _rebuild_error, (type(self), self.args, dict(self.__dict__))


def _rebuild_error(cls: type[AiaxError], args: tuple, state: dict) -> AiaxError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(AiaxError, ValueError):
    """A parameter or an input array is not what was expected.

    Parameters
    ----------
    field : str
        Name of the parameter, file or field at fault.
    problem : str
        What is wrong with it.
    expected : str
        What was expected instead.
    """

    def __init__(self, field: str, problem: str, expected: str) -> None:
        self.field, self.problem, self.expected = field, problem, expected
        super().__init__(f"{field} {problem}; {expected}")


class StoreError(AiaxError, OSError):
    """A file or store on disk cannot be read or written as needed."""

    def __init__(self, path: object, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{path}: {problem}; {fix}")


class UnknownNameError(AiaxError, KeyError):
    """A registry look-up (method, dataset, split) found nothing by that name."""

    def __init__(self, kind: str, name: str, known: list[str], hint: str) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        listing = ", ".join(self.known) if self.known else "none"
        super().__init__(f"unknown {kind} {name!r} (known: {listing}); {hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]
