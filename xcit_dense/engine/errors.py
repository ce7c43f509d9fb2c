"""The engine's error types and the short report of a user's mistake. The bottom of the engine:
it imports no other engine module, so every engine module can import it."""
import contextlib
import sys
from typing import Iterator

from ..checkpoint import CheckpointMismatchError, CheckpointReadError
from ..datasets.validate import AnnotationError


class UsageError(Exception):
    """A mistake on the command line or in a config, reported without a traceback."""


class DatasetNotFoundError(FileNotFoundError):
    """A config's dataset files are missing."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


@contextlib.contextmanager
def short_errors(prog: str) -> Iterator[None]:
    """Report mistakes (:class:`UsageError`, missing or broken data, a checkpoint that does not
    fit the model) as ``prog: error: message`` and exit with status 2, like argparse; other
    errors keep their traceback."""
    try:
        yield
    except UsageError as e:
        sys.stderr.write(f'{prog}: error: {e}\n')
        sys.exit(2)
    except (DatasetNotFoundError, AnnotationError, CheckpointMismatchError,
            CheckpointReadError) as e:
        sys.stderr.write(f'{prog}: error: {type(e).__name__}: {e}\n')
        sys.exit(2)
