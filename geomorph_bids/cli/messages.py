"""How the commands talk to the user besides their results: warnings on one line each, and
output streams whose reader may go away."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import warnings
from typing import Any, Callable, Iterator, TextIO

__all__ = ["escaped", "one_line", "one_line_warnings", "reader_may_go_away", "say", "shell_word", "warning_printer"]

#: the longest word (a path, a value) a one-line message shows whole: a real path on a cluster is a few hundred
#: characters and is shown whole; one of thousands (PATH_MAX is 4,095 bytes) keeps its start and its end
LONGEST_WORD = 500
#: how much of each end of a longer word is kept
WORD_ENDS = 100


def one_line(text: str, keep_spaces: bool = False) -> str:
    """``text`` as one line of a message: line breaks and tabs as one space (as before), every other character
    that does not print escaped (``\\x1b``, ``\\r``, ``\\xa0``: in a name, one could move the cursor, colour
    or overwrite the terminal's line, or hide in it), and each word longer than :data:`LONGEST_WORD`
    characters shortened in its middle, ``/data/aaaa...(2895 characters)...aaaa/lh.sulc``, so that the line
    itself stays readable. ``keep_spaces``: for a line that names folders as they are (the start line, ``inputs:``):
    its spaces kept as they are (``/data/my  study`` is not ``/data/my study``), a line break or tab escaped as
    ``\\n``/``\\t`` (a name holds it, not the message)."""
    text = str(text)
    if not keep_spaces:
        text = text.replace("\r\n", "\n")
    text = escaped(text, kept="" if keep_spaces else "\n\t")
    words = []
    for word in (re.split(r"( +)", text) if keep_spaces else text.split()):
        if len(word) > LONGEST_WORD and not word.isspace():
            word = f"{word[:WORD_ENDS]}...({len(word) - 2 * WORD_ENDS} characters)...{word[-WORD_ENDS:]}"
        words.append(word)
    return ("" if keep_spaces else " ").join(words)


def escaped(text: str, kept: str = "") -> str:
    """``text`` with every character that does not print (but those in ``kept``) written as its Python
    escape (``\\n``, ``\\x1b``, ``\\xa0``); the rest as it is, whole."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in kept else c.encode("unicode_escape").decode("ascii") for c in text)


def say(text: str, *, file: TextIO | None = None, flush: bool = False, keep_spaces: bool = False) -> None:
    """Print ``text``, a ``warning:``, ``note:`` or ``FAILED`` line, as :func:`one_line` writes an ``error:``
    line: a character that does not print escaped, a word over :data:`LONGEST_WORD` characters shortened,
    a line break a space; the line's leading indentation (``  FAILED ...``) kept. ``file``: ``sys.stdout``
    when None, looked up at the call (as ``print`` does, so :func:`reader_may_go_away`'s streams are used).
    ``keep_spaces``: :func:`one_line`'s, for a line naming folders exactly."""
    text = str(text)
    indent = text[: len(text) - len(text.lstrip(" "))]
    line = one_line(text, keep_spaces=keep_spaces)
    print(line if keep_spaces else indent + line, file=sys.stdout if file is None else file, flush=flush)


def shell_word(value: object) -> str:
    """``value`` (a path) as one word of a command a message suggests, to be pasted into a shell:
    quoted where it holds a space, quote, ``$``, ``#``, ``*``, a non-ASCII letter..., as it is
    otherwise (``/data/ds`` stays ``/data/ds``)."""
    import shlex

    return shlex.quote(str(value))


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within the block (and in processes forked from it), a Python warning is printed as
    ``<prog>: warning: <message>`` on one line of stderr, without the source file and line
    Python shows by default. Like Python's own, a warning that cannot be written (stderr
    closed, a pipe whose reader has gone) is dropped, never raised into the code that warned."""
    with warnings.catch_warnings():
        warnings.showwarning = warning_printer(prog)
        yield


def warning_printer(prog: str) -> Callable[..., None]:
    """What :func:`one_line_warnings` sets :func:`warnings.showwarning` to, as a picklable object: batch
    mode's workers, started by a fork server rather than forked from the block, are given it to set too
    (their warnings were printed in Python's two-line format, the source line with them)."""
    return functools.partial(_show_warning, prog)


def _show_warning(prog: str, message: Any, category: Any, filename: Any, lineno: Any, file: TextIO | None = None,
                  line: Any = None) -> None:  # noqa: ARG001 - warnings.showwarning's signature
    try:
        say(f"{prog}: warning: {message}", file=file or sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # closed or missing stream
        pass


class _OutlivesItsReader:
    """A text stream (``sys.stdout``/``sys.stderr``) whose reader may go away: the first write or
    flush that finds the pipe closed (``| head -1``; ``nohup geomorph-bids ... | tee log &`` whose
    ``tee`` ended with the session) points the file descriptor at ``/dev/null`` and the run goes
    on, its text dropped; before, the BrokenPipeError ended the run (``error: Broken pipe``, exit 1,
    reports not built) wherever it was raised.

    A character the stream's encoding cannot hold (``PYTHONIOENCODING=ascii`` or ``latin-1``, a
    locale of another encoding; a path with ``ä`` or ``→`` in a printed line) is written as its
    escape, ``\\xe4``, ``\\u2192``, as Python writes stderr: before, stdout's ``UnicodeEncodeError`` ended
    the run at the first such line (``error: 'ascii' codec can't encode character '\\xe4' ...``, exit
    1: nothing registered, or the group level's TSV without its page)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def _to_null(self) -> None:
        self.reader_gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())  # C libraries and child processes write there too
            finally:
                os.close(null)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()  # what was buffered for the reader goes to /dev/null now

    def write(self, text: str) -> int:
        try:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:  # nothing written yet: the whole text is encoded first
                encoding = getattr(self._stream, "encoding", None) or "ascii"
                self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
                return len(text)
        except BrokenPipeError:
            self._to_null()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_null()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def reader_may_go_away() -> Iterator[None]:
    """Within the block, ``sys.stdout`` and ``sys.stderr`` survive their reader going away
    (:class:`_OutlivesItsReader`): the run does what it was asked and exits with its own code;
    what it would have printed is lost. Both are flushed on leaving, so that Python's flush at
    exit finds nothing to fail on (it would print a traceback and exit 120)."""
    saved = sys.stdout, sys.stderr
    wrapped = [None if s is None else _OutlivesItsReader(s) for s in saved]
    sys.stdout, sys.stderr = wrapped  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in wrapped:
            if stream is not None:
                stream.flush()
        sys.stdout, sys.stderr = saved
