"""Exceptions raised on bad input: one line naming subject, hemisphere and file."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from pathlib import Path


class InputError(ValueError):
    """A problem with an input file, reported on one line.

    The message reads ``sub-01 hemi-L lh.sulc: <what is wrong>``; the subject and
    hemisphere are filled in by callers that know them (see :meth:`with_context`).
    """

    def __init__(self, message: str, *, path: str | Path | None = None,
                 subject: str | None = None, hemi: str | None = None, feature: str | None = None) -> None:
        self.reason = " ".join(str(message).split())  # always one line
        self.path = None if path is None else Path(path)
        self.subject = subject
        self.hemi = hemi
        self.feature = feature  # the input map the problem is with (its file filled in by with_context)
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.subject:
            where.append(self.subject if self.subject.startswith("sub-") else f"sub-{self.subject}")
        if self.hemi:
            where.append(f"hemi-{self.hemi}")
        if self.path is not None:  # a name with a line ending or edge blanks is quoted: it is the problem
            name = str(self.path)
            where.append(repr(name) if name != name.strip() or not name.isprintable() else name)
        return (" ".join(where) + ": " if where else "") + self.reason

    def with_context(self, *, subject: str | None = None, hemi: str | None = None,
                     path: str | Path | None = None,
                     feature_files: Mapping[str, str | Path] | None = None) -> "InputError":
        """Return a copy with subject/hemisphere/file filled in where still unknown; an error about
        a feature map given as an array (``feature``) gets that map's file from ``feature_files``
        (name -> the file the caller read it from)."""
        if self.path is None and path is None and self.feature and feature_files:
            path = feature_files.get(self.feature)
        return InputError(self.reason, path=self.path if self.path is not None else path,
                          subject=self.subject or subject, hemi=self.hemi or hemi, feature=self.feature)


_ERRNO_WORDS = {"ENOSPC": "no space left on device (disk full)", "EDQUOT": "disk quota exceeded",
                "EROFS": "read-only filesystem", "EACCES": "permission denied", "EPERM": "operation not permitted",
                "EFBIG": "file too large (the file size limit)", "EIO": "input/output error (a failing disk or network "
                                                                        "filesystem?)", "ENOENT": "no such file"}


def closest_name(given: str, names: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The one of ``names`` a user most likely meant by ``given`` (case and surrounding blanks
    ignored: ``Rigid``, ``multiproc``, ``sulcc``; ``cutoff``: :func:`difflib.get_close_matches`'s,
    1.0 for case slips alone), spelled as in ``names``; None when none is close. For the "did you
    mean" of a message about a name that is not one of ``names``."""
    import difflib

    spelled: dict[str, str] = {}
    for name in names:
        spelled.setdefault(str(name).lower(), str(name))
    key = str(given).strip().lower()
    if key in spelled:
        return spelled[key]
    close = difflib.get_close_matches(key, list(spelled), n=1, cutoff=cutoff)
    return spelled[close[0]] if close else None


def user_words(uid: int) -> str:
    """``labuser (uid 1001)``; ``uid 1001`` for a uid without a passwd entry (``docker run -u``)."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError, OSError):
        return f"uid {uid}"


def owner_words(path: str | Path) -> str:
    """Who owns ``path`` and its mode, as a lab member would ask about it: ``labuser (uid 1001),
    group lab, mode 0755``; '' when it cannot be looked at."""
    import os
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return ""
    try:
        import grp

        group = grp.getgrgid(st.st_gid).gr_name
    except (ImportError, KeyError, OSError):
        group = f"gid {st.st_gid}"
    return f"{user_words(st.st_uid)}, group {group}, mode {stat.S_IMODE(st.st_mode):04o}"


def _whose(path: str | Path) -> str:
    """For a permission error at ``path``: `` (FOLDER belongs to labuser (uid 1001), group lab, mode
    2755, and this run is labmate (uid 1002))`` where another user's file this user may not read, or
    another user's folder this user may not write in, refused it (a colleague's participant in a
    lab's shared output folder): whom to ask. '' when this user's own, for root (whom only a server
    refuses: NFS's root_squash), or when nothing can be told."""
    import os

    p = Path(path)
    if os.geteuid() == 0:
        return ""
    try:
        if os.path.lexists(p) and not os.access(p, os.R_OK):
            refusing = p
        elif os.path.isdir(p.parent) and not os.access(p.parent, os.W_OK | os.X_OK):
            refusing = p.parent
        else:
            return ""
        if os.lstat(refusing).st_uid == os.geteuid():
            return ""
    except OSError:
        return ""
    return f" ({refusing} belongs to {owner_words(refusing)}, and this run is {user_words(os.geteuid())})"


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError that says what happened in words, then the file:
    ``no space left on device (disk full) writing /out/x.json``; for a permission error, whose the
    file or folder that refused it is when another user's (:func:`_whose`)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    what = _ERRNO_WORDS.get(name, exc.strerror or str(exc))
    verb = "writing" if name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") else "at"
    where = exc.filename2 or exc.filename
    whose = _whose(where) if where and name in ("EACCES", "EPERM") else ""
    return " ".join(f"{what}{f' {verb} {where}' if where else ''}".split()) + whose
