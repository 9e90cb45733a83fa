"""Checks before a run writes anything, and the locks that keep concurrent runs apart.

Preflight (:func:`check_writable`): the output and work folders must exist or be creatable,
accept an actual write (a probe file is written, flushed to disk and removed: this catches
read-only filesystems, permission bits, quotas and, unlike ``os.access`` alone, works the same
as root) and have at least :data:`MIN_FREE_MB` MiB free. Any failure is one :class:`InputError`
line naming the folder, raised before any work is done.

Locks (:class:`RunLocks`): advisory ``fcntl.flock`` locks on files in
``<output_dir>/.geomorph-locks/``: one per participant (``sub-<label>.lock``, held for the
whole run by the run processing that participant) and ``run.lock`` (held shared by every
running ``geomorph-bids``; the leftovers of killed runs are removed only by a run that can take
it exclusively, i.e. when no other run is active). The kernel releases a flock when the last
descriptor of it closes; the lock descriptors are closed in every process forked while they are
held (Nipype's workers), so the lock dies with the run's main process (SIGKILL included) and
never outlives it in a leftover worker. A lock whose recorded holder has ended is never
honoured: if something still holds it, the participant fails at once with one line naming the
processes that do (never a wait without end). Lock files are opened without following links
and are never deleted (deleting a lock file while another process waits on it would let two
runs in).

On a file system without ``flock`` (NFS without its lock service: ENOLCK; Lustre without ``-o
flock``: ENOSYS; some FUSE and SMB mounts: :data:`~geomorph_bids.io.atomic.FLOCK_UNSUPPORTED`) a
participant's lock is a file created exclusively instead (``O_EXCL``: ``sub-<label>.held``, with its
holder's pid, host and start time), removed when the run ends; one whose holder was a process of
this machine that has ended is taken over, one a run killed on another machine left must be
deleted by hand (nothing can tell whether that run lives). ``run.lock`` is then not held: no run
can know it is alone, so none removes killed runs' leftovers. The group level and
``--reports-only`` read the ``.held`` files for the participants being processed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
import uuid
import weakref
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Sequence

from ..errors import InputError, owner_words, user_words
from ..io.atomic import flock_unsupported, flush_to_disk, share_file, shared_folder
from ..io.process_wide import ForkHooks
from .interrupts import pid_alive
from .messages import say, shell_word

__all__ = ["MIN_FREE_MB", "LOCK_DIR", "check_writable", "check_file_can_be_written", "name_max", "path_max",
           "work_dir_too_deep",
           "preflight", "remove_if_empty", "missing_folders", "remove_created", "names_fold_case", "RunLocks",
           "lock_participants", "participant_runs_active", "folder_lock", "REPORTS_LOCK", "participant_lock_holder",
           "ParticipantLocks", "participant_locks", "HELD_SUFFIX", "without_flock_note", "shown_lock_file",
           "filesystem_type", "SQUASHING_FILE_SYSTEMS"]

#: free space (MiB) required before a run starts. Measured: the example dataset (2 subjects, both
#: hemispheres, 10,242-vertex spheres, ``--model rigid``) writes 8.6 MB of outputs and 3.2 MB of
#: work files (outputs are copies, not hard links, of work files: a damaged output never damages
#: the work folder's cache, :func:`geomorph_bids.results.writer.commit_outputs`); native
#: files grow with the vertex count (a FreeSurfer sphere has ~140k). The minimum catches a full
#: disk up front; it is no guarantee for a large cohort (a disk filling during the run fails the
#: hemispheres concerned, each on one line, and leaves none of their outputs).
MIN_FREE_MB = MappingProxyType({"output": 64, "work": 256})

#: folder of the lock files, inside the output directory (hidden: not part of the derivatives)
LOCK_DIR = ".geomorph-locks"

#: suffix of a participant's lock where the file system has no ``flock`` (:class:`RunLocks`): a file
#: created exclusively, removed when its run ends
HELD_SUFFIX = ".held"
#: the lock descriptors a process forked while a :class:`RunLocks` holds them closes first (one
#: ``os.register_at_fork`` for the process, not one per run)
_FORKED = ForkHooks()

#: seconds :func:`lock_participants` waits before trying a held participant lock once more: a
#: probe (:func:`participant_lock_holder`) holds one for microseconds
PROBE_PAUSE_S = 0.05


def _write_probe(folder: Path) -> None:
    """Create, fill, fsync and remove a small file in ``folder`` (raises OSError)."""
    probe = folder / f".geomorph-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"\0" * 4096)
        flush_to_disk(fd)  # a file system without fsync (s3fs, gcsfuse) is written to as any other
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except FileNotFoundError:
            pass


def _read_only_mount(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only (where no permission helps)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _free_mb(folder: Path) -> float:
    import shutil

    return shutil.disk_usage(folder).free / 2 ** 20


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only filesystem"
    if exc.errno == errno.EDQUOT:  # the disk may have room: df shows none of it
        return "disk quota exceeded: your quota there is used up (quota -s; on Lustre lfs quota -h FOLDER)"
    if exc.errno == errno.ENOSPC:
        return f"no space left ({exc.strerror})"
    if exc.errno == errno.EFBIG:
        return f"file size limit reached ({exc.strerror})"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def _container_hint(role: str, folder: Path, err: int) -> str:
    """What to do about an output or work folder (``role``) that cannot be created or written
    (``err``: the errno, EACCES/EPERM or EROFS) when this runs inside our image
    (``$GEOMORPH_CONTAINER``, set by the Dockerfile and ``singularity.def``), where the cause is
    nearly always the ``docker run`` line: a host folder owned by another user than the one the
    container runs as (the image's uid 10001 without ``-u``; a folder Docker created as root for a
    bind whose host path did not exist), a folder bound read-only, or no folder bound there at all
    (the image's own files are not writable). Empty outside the image or for other errors."""
    if not os.environ.get("GEOMORPH_CONTAINER") or err not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ""
    near = folder
    while not near.exists() and near != near.parent:
        near = near.parent
    if err == errno.EROFS or near == near.parent:  # the image itself, or a read-only bind
        extra = ("; or give the container a writable /tmp (docker run --read-only --tmpfs /tmp)"
                 if role == "work" else "")
        return (f"; in this container only folders bound writable can be written: bind a host folder you own "
                f"there, not :ro (docker run -v /path/on/host:{folder}, apptainer run -B /path/on/host:{folder})"
                + extra)
    try:
        st = near.stat()
        owner = f"uid {st.st_uid}, gid {st.st_gid}, mode {st.st_mode & 0o7777:04o}"
    except OSError:
        owner = "another user"
    return (f"; in this container the command runs as uid {os.getuid()}, gid {os.getgid()} and {near} "
            f"belongs to {owner}: run the container as the folder's owner (docker run -u \"$(id -u):$(id -g)\", "
            "with a host folder you own: Docker creates a bind's missing host folder as root) or make it "
            "writable for that uid")


#: file system types (``/proc/self/mounts``) whose server may refuse root what the folder's modes allow
#: (NFS's ``root_squash``, the default, maps root to nobody; SMB maps every local user to the share's)
SQUASHING_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3")


def filesystem_type(folder: Path) -> str:
    """The type of the file system ``folder`` lies on (``ext4``, ``nfs4``, ``fuse.sshfs``, ``lustre``),
    from the longest mount point above it in ``/proc/self/mounts``; "" where unknown (not Linux)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    path, best, kind = os.path.realpath(folder), -1, ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > best:
            best, kind = len(point), fields[2]
    return kind


def _root_squash_hint(folder: Path, err: int) -> str:
    """What to do when root is refused (``err``: EACCES, EPERM) a folder on a network file system
    (:data:`SQUASHING_FILE_SYSTEMS`): its server maps root to nobody, whatever the folder's modes say.
    Empty otherwise (root is refused nothing on a local file system but a read-only mount's writes)."""
    if err not in (errno.EACCES, errno.EPERM) or os.geteuid() != 0:
        return ""
    near = Path(folder)
    while not near.exists() and near != near.parent:
        near = near.parent
    kind = filesystem_type(near)
    if kind not in SQUASHING_FILE_SYSTEMS:
        return ""
    return (f"; {near} is on {kind}, whose server maps root to another user (NFS's root_squash): run as a user "
            "who may write there (the folder's owner; in a container docker run -u \"$(id -u):$(id -g)\"), not as root")


def _owner_hint(path: Path, err: int | None) -> str:
    """For a permission error (``err``: EACCES/EPERM) on ``path``, or on its nearest existing folder,
    that belongs to another user (a lab member's folder in a shared one): whose it is, who this run
    is, and what either can do. Empty for other errors, for this user's own, and inside our image
    (:func:`_container_hint` speaks of the ``docker run`` line there), and for root (whom only a
    server refuses: :func:`_root_squash_hint`)."""
    if err not in (errno.EACCES, errno.EPERM) or os.environ.get("GEOMORPH_CONTAINER") or os.geteuid() == 0:
        return ""
    near = Path(path).absolute()
    while not os.path.lexists(near) and near != near.parent:
        near = near.parent
    try:
        st = os.lstat(near)
        if st.st_uid == os.geteuid():
            return ""
        ours = st.st_gid in (os.getegid(), *os.getgroups())
    except OSError:
        return ""
    help_ = (f"its owner can make it writable for the group (chmod -R g+w {shell_word(near)}), or use a folder "
             "of your own" if ours else "its group is none of this user's: use a folder of your own")
    return f"; {near} belongs to {owner_words(near)}, and this run is {user_words(os.geteuid())}: {help_}"


def check_writable(folder: Path, role: str, min_free_mb: float | None = None) -> bool:
    """Make sure ``folder`` (the ``role`` folder: "output" or "work") can be written.

    Creates it when missing; returns True when it did (so a caller can remove it again if a
    later check fails). Raises :class:`InputError` naming the folder when it cannot be created,
    refuses a probe write, or has less than ``min_free_mb`` (default :data:`MIN_FREE_MB`) free.
    """
    folder = Path(folder).absolute()
    need = MIN_FREE_MB.get(role, 64) if min_free_mb is None else min_free_mb
    created = not folder.exists()
    made = missing_folders(folder)  # the parents mkdir makes too: removed with it when a check fails
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the {role} directory is not a folder", path=folder)
    if folder.is_symlink() and not folder.exists():  # mkdir would say only "File exists"
        try:
            target = os.readlink(folder)
            os.stat(folder)
        except OSError as exc:
            why = ("a loop of symbolic links" if exc.errno == errno.ELOOP else
                   f"a link to {target}, which does not exist: create that folder, or give another")
            raise InputError(f"cannot create the {role} directory: it is {why}", path=folder) from None
    try:  # in a lab's group-writable folder, writable for the group too: the others' runs add participants
        shared_folder(folder, repair=False)
    except OSError as exc:  # out/<a name too long>: out itself was made (and was left behind)
        remove_created(made)
        hint = (_container_hint(role, folder, exc.errno) or _root_squash_hint(folder, exc.errno)
                or _owner_hint(folder, exc.errno))
        raise InputError(f"cannot create the {role} directory ({_why(exc)}){hint}", path=folder) from None
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            # a read-only mount (``mount -o ro``, ``docker run -v ...:ro``) fails access() too: not permissions
            err = errno.EROFS if _read_only_mount(folder) else errno.EACCES
            hint = _container_hint(role, folder, err) or _root_squash_hint(folder, err) or _owner_hint(folder, err)
            raise InputError(f"the {role} directory is not writable ({_why(OSError(err, os.strerror(err)))}){hint}",
                             path=folder)
        try:
            _write_probe(folder)
        except OSError as exc:
            hint = (_container_hint(role, folder, exc.errno) or _root_squash_hint(folder, exc.errno)
                    or _owner_hint(folder, exc.errno))
            raise InputError(f"cannot write to the {role} directory ({_why(exc)}){hint}", path=folder) from None
        free = _free_mb(folder)
        if free < need:
            raise InputError(f"the {role} directory has {free:.0f} MiB free; geomorph-bids needs at least "
                             f"{need:.0f} MiB there (disk full?)", path=folder)
    except InputError:
        remove_created(made)
        raise
    return created


def _not_a_folder(path: Path) -> str:
    """Why ``path``, which exists or is a link, is no folder to write in: ``is not a folder``, or, for a link that
    leads nowhere, ``is a symbolic link that leads to itself (a loop)`` / ``is a broken symbolic link (to X)``."""
    if not path.is_symlink() or path.exists():
        return "is not a folder"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that leads back to itself (a loop), not a folder: remove it or give another name"
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"is a broken symbolic link (to {target}), not a folder: remove it or give another name"


def check_file_can_be_written(path: Path, option: str, folder_of_files: bool = False) -> None:
    """Raise :class:`InputError` (naming ``option`` and the folder) unless a file can be written at
    ``path`` (or in it, ``folder_of_files``): its nearest existing folder takes a probe write
    (read-only filesystem, permissions, a full disk, a file where a folder is needed). Nothing is
    created or left. For commands that write a few named files (geomorph-register): found before
    the registration, not after it, and said of the output rather than of its temporary name."""
    folder = Path(path).absolute() if folder_of_files else Path(path).absolute().parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{option} cannot be written: {folder} {_not_a_folder(folder)}", path=path)
    try:
        _write_probe(folder)
    except OSError as exc:
        raise InputError(f"{option} cannot be written in {folder} ({_why(exc)})", path=path) from None
    if not folder_of_files:  # found after the registration: "File name too long at .../.<name>.a86fdk6p.tmp"
        from ..io.atomic import TEMP_NAME_EXTRA

        size, longest = len(os.fsencode(Path(path).name)), name_max(folder) - TEMP_NAME_EXTRA
        whole = len(os.fsencode(Path(path).absolute())) + TEMP_NAME_EXTRA  # the bytes on disk, in any locale
        if size > longest:
            raise InputError(f"{option} cannot be written: its file name is {size} bytes long, more than the {longest} "
                             f"the file system takes ({longest + TEMP_NAME_EXTRA}, less {TEMP_NAME_EXTRA} for the "
                             "temporary name it is written under); give a shorter name", path=path)
        if whole > path_max(folder):
            raise InputError(f"{option} cannot be written: its path, with the temporary name it is written under, "
                             f"would be {whole} bytes long, more than the {path_max(folder)} the system takes "
                             "(PATH_MAX); give a shorter path", path=path)


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is an empty folder (a directory a failed check created)."""
    try:
        folder.rmdir()
    except OSError:
        pass


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and each of its parents that does not exist (what ``mkdir(parents=True)`` makes),
    ``folder`` first: ``new/deep/out`` in an empty folder -> ``[new/deep/out, new/deep, new]``."""
    out: list[Path] = []
    folder = Path(folder).absolute()
    while not os.path.lexists(folder) and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def remove_created(folders: Sequence[Path]) -> None:
    """Remove each of ``folders`` (those a run created: :func:`missing_folders`) that is empty, the
    deepest first, so that a parent emptied by its child goes too. A refused run left the parents
    of a new output or work folder (``new/deep/out``: ``new/deep``) behind, empty."""
    for folder in sorted(folders, key=lambda f: len(Path(f).absolute().parts), reverse=True):
        remove_if_empty(folder)


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` takes (255 when unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, TypeError):
        return 255


def path_max(folder: Path) -> int:
    """The longest path, in bytes, the system takes for files under ``folder`` (``PATH_MAX`` less
    its terminating NUL: 4095 on Linux; that when unknown). ``folder`` need not exist yet."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_PATH_MAX")) - 1
    except (OSError, ValueError, TypeError):
        return 4095


def names_fold_case(folder: Path) -> bool:
    """Whether the file system of ``folder`` (an existing folder) does not tell names in another
    letter case apart (macOS's and Windows' defaults, exFAT, SMB shares, ext4 with casefold): the
    nearest of ``folder`` and its parents on the same file system whose name holds a letter is
    looked up in the other case. Nothing is written; False where no such name is there."""
    folder = Path(folder).absolute()
    try:
        device = folder.stat().st_dev
        for p in (folder, *folder.parents):
            if p.stat().st_dev != device:
                return False
            other = p.with_name(p.name.swapcase()) if p.name else p
            if other != p:
                return other.exists() and os.path.samefile(p, other)
    except OSError:
        return False
    return False


def work_dir_too_deep(work_dir: Path, subject: str, session: str | None) -> str | None:
    """Why Nipype cannot work for ``subject``/``session`` under ``work_dir`` (its deepest path,
    :func:`~geomorph_bids.crashfiles.work_depth`, longer than :func:`path_max`), or None. Found
    only by Nipype, it failed each hemisphere with ``File name too long`` at a path of its own."""
    from ..crashfiles import work_depth

    length, depth = len(os.fsencode(Path(work_dir).absolute())), work_depth(subject, session)
    limit = path_max(work_dir)
    if length + depth <= limit:
        return None
    return (f"the work directory's path is {length} bytes long and Nipype writes paths up to {depth} bytes "
            f"deeper below it (sub-{subject}{f' ses-{session}' if session else ''}), more than the {limit} the "
            f"system takes (PATH_MAX): choose a work directory (-w) whose path is at most {limit - depth} bytes "
            "(e.g. a link to it)")


def preflight(output_dir: Path, work_dir: Path | None, subjects: Sequence[str] = (), nipype: bool = True
              ) -> list[Path]:
    """Before any work: both folders exist or can be created, take a real write and have the
    documented free space (:data:`MIN_FREE_MB`), and the work directory leaves Nipype room for
    its paths (:func:`work_dir_too_deep`, for the shortest of ``subjects``, the participant labels
    given, or a one-character label; ``nipype``: the workflow runs, not batch mode); else one
    :class:`InputError` line naming the folder (a folder this check created is removed again).
    Returns the folders it created."""
    if work_dir is not None and nipype:
        labels = [str(s).removeprefix("sub-") for s in subjects]
        too_deep = work_dir_too_deep(work_dir, min(labels, key=len, default="1"), None)
        if too_deep is not None:
            raise InputError(too_deep, path=Path(work_dir).absolute())
    if work_dir is not None and "_unfinished" in str(Path(work_dir).absolute()):
        # Nipype renames each step's "<hash>_unfinished.json" with str.replace over the whole path:
        # every step would fail with "no such file" at a path the work folder does not have
        raise InputError("the work directory's path holds '_unfinished', which Nipype removes from the path of "
                         "every step's cache file (each step would fail with 'no such file'); choose a work "
                         "directory (-w) whose path does not hold it", path=Path(work_dir).absolute())
    made = missing_folders(output_dir)
    created = made if check_writable(output_dir, "output") else []
    if work_dir is None:
        return created
    try:
        made = missing_folders(work_dir)
        if check_writable(work_dir, "work"):
            created += made
    except InputError:
        remove_created(created)
        raise
    return created


class RunLocks:
    """The locks of one run in ``<output_dir>/.geomorph-locks`` (use as a context manager).

    Entering takes ``run.lock`` shared; :meth:`try_lock` / :meth:`wait_lock` take a
    participant's lock exclusively; leaving (or the process dying) releases everything.
    """

    def __init__(self, output_dir: Path) -> None:
        self.folder = Path(output_dir) / LOCK_DIR
        self._fds: dict[str, int] = {}
        self._files: dict[str, bytes] = {}  # name -> what this run wrote in its .held file (no flock)
        #: why this folder's file system takes no flock (``ENOLCK: No locks available``), or ""; then a
        #: participant's lock is a ``.held`` file created exclusively (:meth:`_take_file`)
        self.without_flock = ""
        self._child_hook: int | None = None  # the ForkHooks token while the locks are held

    def path(self, name: str) -> Path:
        """The lock file of ``name`` (e.g. ``sub-01``): ``<name>.lock``, or ``<name>.held`` where the
        file system takes no flock."""
        return self.folder / f"{name}{HELD_SUFFIX if self.without_flock else '.lock'}"

    def _open(self, name: str) -> int:
        self._make_folder()
        path = self.folder / f"{name}.lock"
        try:  # never through a link: the holder writes its pid into the file. 0666 less the umask, as
            # every output, and the group's write where the folder is a lab's shared one (with 0644
            # the group's other members' runs stopped on run.lock)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            why = "it is a link (lock files are never followed)" if exc.errno == errno.ELOOP else _why(exc)
            raise InputError(f"cannot open the lock file: {why}{_owner_hint(path, exc.errno)}", path=path) from None
        share_file(fd, self.folder)
        return fd

    def _make_folder(self) -> None:
        """``.geomorph-locks``, group-writable in a group-writable folder whatever the umask (every
        member's runs lock there: :func:`~geomorph_bids.io.atomic.shared_folder`)."""
        try:
            shared_folder(self.folder)
        except OSError as exc:
            raise InputError(f"cannot create the lock folder ({_why(exc)}){_owner_hint(self.folder, exc.errno)}",
                             path=self.folder) from None

    def _no_flock(self, exc: OSError) -> None:
        """``flock`` failed with ``exc``: remember that the file system takes none
        (:func:`~geomorph_bids.io.atomic.flock_unsupported`), or raise it again."""
        if not flock_unsupported(exc):
            raise exc
        self.without_flock = f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"

    def _take_file(self, name: str) -> bool:
        """Take ``name``'s lock as a file created exclusively (the file system has no flock); False
        when another run's file is there. One whose holder was a process of this machine that has
        ended is removed first (:meth:`_clear_dead_holder`)."""
        self._make_folder()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        text = f"pid {os.getpid()} on {socket.gethostname()} since {stamp}Z\n".encode()  # as _mark writes it
        for _ in range(2):
            try:
                fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o666)
            except FileExistsError:
                if self._clear_dead_holder(name):
                    continue
                return False
            except OSError as exc:
                why = "it is a link (lock files are never followed)" if exc.errno == errno.ELOOP else _why(exc)
                raise InputError(f"cannot create the lock file: {why}", path=self.path(name)) from None
            try:
                os.write(fd, text)
                flush_to_disk(fd)
            finally:
                os.close(fd)
            self._files[name] = text
            return True
        return False

    def _read_file(self, name: str) -> bytes | None:
        try:
            fd = os.open(self.path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def _clear_dead_holder(self, name: str) -> bool:
        """Remove ``name``'s ``.held`` file if its holder was a process of this machine that has
        ended (killed: SIGKILL, the out-of-memory killer); returns whether it did. Runs finding it
        at once take turns through a ``.takeover`` file created exclusively, and the file is removed
        only if it still holds what was judged, never a lock another run has just taken."""
        text = self._read_file(name)
        pid, host = _holder_pid((text or b"").decode("utf-8", "replace"))
        if pid is None or host != socket.gethostname() or pid_alive(pid):
            return False
        guard = self.folder / f"{name}.takeover"
        try:
            fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError:
            return False
        try:
            if self._read_file(name) == text:
                self.path(name).unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)
            guard.unlink(missing_ok=True)

    def _drop_file(self, name: str) -> None:
        """Remove this run's ``.held`` file of ``name`` (if it is still this run's)."""
        text = self._files.pop(name, None)
        if text is not None and self._read_file(name) == text:
            self.path(name).unlink(missing_ok=True)

    def _forget_in_child(self) -> None:
        """In a process forked while locks are held: close its copies of the lock descriptors
        (the parent keeps the locks; the child must not keep them alive after the parent dies)."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
        self._files = {}  # the parent's .held files: removed by the parent alone

    def __enter__(self) -> "RunLocks":
        fd = self._open("run")
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # an exclusive holder only cleans up briefly
            self._fds["run"] = fd
        except OSError as exc:  # no flock here: run.lock is not held (when_alone is then never true)
            os.close(fd)
            self._no_flock(exc)
        if self._child_hook is None:
            me = weakref.ref(self)
            self._child_hook = _FORKED.add(lambda: (lambda locks: locks and locks._forget_in_child())(me()))
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Release every lock this object holds."""
        for fd in self._fds.values():
            os.close(fd)  # closing the last descriptor releases the flock
        self._fds.clear()
        for name in list(self._files):
            self._drop_file(name)
        if self._child_hook is not None:
            _FORKED.remove(self._child_hook)
            self._child_hook = None

    def holder(self, name: str, patience_s: float = 1.0) -> str:
        """What the run holding ``name``'s lock wrote in it (pid, host, start time), or ''.
        The holder writes it just after taking the lock: an empty file is re-read for up to
        ``patience_s`` seconds."""
        deadline = time.monotonic() + patience_s
        while True:
            data = self._read_file(name)  # a small regular file written by the holder: 4 KiB, never through a link
            if data is None:
                return ""
            text = " ".join(data.decode("utf-8", "replace").split())
            if text or time.monotonic() >= deadline:
                return text
            time.sleep(0.05)

    def _mark(self, name: str, fd: int) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        text = f"pid {os.getpid()} on {socket.gethostname()} since {stamp}Z\n".encode()
        os.pwrite(fd, text, 0)            # overwrite first, then cut: the file is never empty
        os.ftruncate(fd, len(text))
        self._fds[name] = fd

    def holds(self, name: str) -> bool:
        """Whether this object holds ``name``'s lock."""
        return name in self._fds or name in self._files

    def unlock(self, name: str) -> None:
        """Give back ``name``'s lock, if held."""
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        self._drop_file(name)

    def try_lock(self, name: str) -> bool:
        """Take ``name``'s lock if free; False when another process holds it."""
        if self.without_flock:
            return self._take_file(name)
        fd = self._open(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            self._no_flock(exc)
            return self._take_file(name)
        self._mark(name, fd)
        return True

    def stale(self, name: str) -> str:
        """Why ``name``'s lock, held by someone, must not be honoured: its recorded holder is a
        process of this machine that has ended; then the processes still holding the lock file
        open (leftovers of that run) are named. ``""`` when the holder is alive (or elsewhere)."""
        pid, host = _holder_pid(self.holder(name, patience_s=0.0))
        if pid is None or host != socket.gethostname() or pid_alive(pid) or self.without_flock:
            return ""  # (a .held file of an ended holder is taken over, never stale)
        holders = [p for p in _processes_with_open(self.path(name)) if p != os.getpid()]
        who = (f"processes {', '.join(map(str, holders))} still hold it (left behind by that run: stop them, "
               f"e.g. kill {' '.join(map(str, holders))})" if holders else "something still holds it")
        return f"the run that took the lock (pid {pid}) has ended, but {who}"

    def wait_lock(self, name: str, poll_s: float = 0.5) -> str:
        """Take ``name``'s lock, waiting for its holder to finish (or die); returns ``""``, or
        without the lock the reason it is stale (:meth:`stale`: a dead holder is never waited for)."""
        if self.without_flock:
            while not self._take_file(name):  # its holder ends, is killed (taken over) or deleted by hand
                time.sleep(poll_s)
            return ""
        fd = self._open(name)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                why = self.stale(name)
                if why:
                    os.close(fd)
                    return why
                time.sleep(poll_s)
            except OSError as exc:
                os.close(fd)
                self._no_flock(exc)
                return self.wait_lock(name, poll_s)
        self._mark(name, fd)
        return ""

    def when_alone(self, action: Callable[[], None]) -> bool:
        """Run ``action`` only if no other run is active (``run.lock`` taken exclusively, then
        given back shared); returns whether it ran."""
        fd = self._fds.get("run")
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # Linux drops the shared lock before a failed conversion: take it back
            fcntl.flock(fd, fcntl.LOCK_SH)
            return False
        try:
            action()
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)
        return True


#: lock held shared by the group level and ``--reports-only`` while they write into the output folder
#: (their temporary files are not a killed run's leftovers: :func:`folder_lock`)
REPORTS_LOCK = "reports"


class ParticipantLocks:
    """A participant's locks in several folders taken as one (the output folder's, then the work
    folder's in the workflow mode: runs into other output folders that share a work folder run
    their common steps in one cache folder). The interface of :class:`RunLocks` that
    :func:`lock_participants` and the participant level use; a participant is held when every
    folder's lock is, and a lock that is busy is given back in the folders taken before it, so a
    run holds a participant in all its folders or in none. :meth:`path`, :meth:`holder` and
    :meth:`stale` name the folder whose lock was found held."""

    def __init__(self, *folders: RunLocks) -> None:
        self.folders = folders
        self._busy: dict[str, RunLocks] = {}

    def __enter__(self) -> "ParticipantLocks":
        with ExitStack() as entered:
            for locks in self.folders:
                entered.enter_context(locks)
            entered.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Release every lock of every folder."""
        for locks in self.folders:
            locks.release()

    def _busy_in(self, name: str, i: int) -> None:
        """``name``'s lock of folder ``i`` was not taken: give it back in the folders before."""
        for earlier in self.folders[:i]:
            earlier.unlock(name)
        self._busy[name] = self.folders[i]

    def try_lock(self, name: str) -> bool:
        """:meth:`RunLocks.try_lock` in every folder, in order."""
        for i, locks in enumerate(self.folders):
            if not locks.try_lock(name):
                self._busy_in(name, i)
                return False
        self._busy.pop(name, None)
        return True

    def wait_lock(self, name: str, poll_s: float = 0.5) -> str:
        """:meth:`RunLocks.wait_lock` in every folder, in order; the first reason it is stale, or ``""``."""
        for i, locks in enumerate(self.folders):
            why = locks.wait_lock(name, poll_s)
            if why:
                self._busy_in(name, i)
                return why
        self._busy.pop(name, None)
        return ""

    def holds(self, name: str) -> bool:
        return all(locks.holds(name) for locks in self.folders)

    def _where(self, name: str) -> RunLocks:
        return self._busy.get(name, self.folders[0])

    def path(self, name: str) -> Path:
        return self._where(name).path(name)

    def holder(self, name: str, patience_s: float = 1.0) -> str:
        return self._where(name).holder(name, patience_s)

    def stale(self, name: str) -> str:
        return self._where(name).stale(name)

    def when_alone(self, action: Callable[[], None]) -> bool:
        """:meth:`RunLocks.when_alone` of the output folder (the first)."""
        return self.folders[0].when_alone(action)

    def without_flock(self) -> list[RunLocks]:
        """The folders whose file system takes no flock (participants locked by ``.held`` files)."""
        return [locks for locks in self.folders if locks.without_flock]


def without_flock_note(folders: Sequence[RunLocks], prog: str = "geomorph-bids") -> str:
    """The one line a participant run prints for its lock folders (``folders``, at least one) whose
    file system takes no flock."""
    where = " and ".join(str(locks.folder) for locks in folders)
    return (f"{prog}: note: {where}: the file system does not lock files (flock: {folders[0].without_flock}; NFS "
            "without its lock service, Lustre without -o flock?): each participant is locked by a file created "
            f"exclusively there instead (sub-<label>{HELD_SUFFIX}, removed when the run ends; one a run killed on "
            "another machine left must be deleted by hand), and killed runs' leftovers are not removed")


def participant_locks(output_dir: Path, work_dir: Path | None) -> ParticipantLocks:
    """The locks of a participant run: the output folder's and, for the workflow mode
    (``work_dir`` given), the work folder's (``<work_dir>/.geomorph-locks/``)."""
    return ParticipantLocks(RunLocks(output_dir), *([RunLocks(work_dir)] if work_dir is not None else []))


@contextmanager
def folder_lock(output_dir: Path, name: str, shared: bool = False, wait: bool = True,
                required: bool = True) -> Iterator[bool]:
    """Hold ``<output_dir>/.geomorph-locks/<name>.lock`` while the block runs (exclusive, or
    ``shared``); ``wait=False``: only if free at once. Yields whether it is held. Uses: a
    read-modify-write of a file every run into the folder shares (``citation``: two runs at once
    both read ``logs/CITATION.md``'s old text, and the last rename lost the other's paragraph);
    :data:`REPORTS_LOCK`, held shared by the group level and ``--reports-only`` and exclusively
    (without waiting) by a participant run that removes the temporary files killed runs left (it
    removed a group level's in flight, which then failed on ``no such file``). Such a block lasts
    milliseconds, or a group level's run; a holder that dies releases it. A lock file that cannot
    be opened is an :class:`InputError`, unless not ``required``: the block then runs without it
    (the group level needs no lock to write, as before there was one)."""
    locks = RunLocks(output_dir)
    try:
        fd = locks._open(name)  # the lock files' own rules: never through a link, the umask
    except InputError:
        if required:
            raise
        yield False
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
            held = True
        except BlockingIOError:
            held = False
        except OSError as exc:  # no flock on this file system: an exclusive lock is a file created
            locks._no_flock(exc)  # exclusively (removed below); a shared one is not held (False)
            held = not shared and (locks.wait_lock(name, poll_s=PROBE_PAUSE_S) == "" if wait
                                   else locks.try_lock(name))
        yield held
    finally:
        os.close(fd)  # closing releases the lock
        locks.release()


def participant_runs_active(output_dir: Path) -> bool:
    """Whether a participant-level run is processing (or waiting for) participants of
    ``output_dir``: something holds its ``run.lock`` (every participant run holds it shared from
    its start to its end; on a shared file system, from any node where flock works). Probed
    with an exclusive non-blocking flock, released at once: a run starting meanwhile waits
    microseconds for its shared lock, never fails. Creates nothing (no lock folder: False)."""
    locks = _held_files(output_dir)
    fd = _open_to_probe(Path(output_dir) / LOCK_DIR / "run.lock")
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock: the participants' .held files say it (below)
        pass
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the probe's lock
    return any(_held_by_a_live_run(locks, p.name.removesuffix(HELD_SUFFIX))
               for p in sorted(locks.folder.glob(f"sub-*{HELD_SUFFIX}")))


def _open_to_probe(path: Path) -> int | None:
    """A descriptor on a lock file to probe with an exclusive flock, or None (no such file): open
    for writing where this user may (NFS emulates flock with byte-range locks, and refuses an
    exclusive one on a descriptor open for reading alone: EBADF), else for reading. Never through a
    link, as :class:`RunLocks` opens it."""
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                return None
    return None


def _held_files(output_dir: Path) -> RunLocks:
    """A reader of ``output_dir``'s ``.held`` files (the participants' locks without flock)."""
    locks = RunLocks(output_dir)
    locks.without_flock = "read by a probe"  # (any text: path() and holder() then name the .held files)
    return locks


def shown_lock_file(output_dir: Path, name: str) -> Path:
    """The lock file of ``name`` (``sub-01``; ``run``: any participant's) in ``output_dir`` that a
    message names: its ``.held`` file where one is there (a file system without flock; for
    ``run`` the first participant's), else ``<name>.lock``."""
    folder = Path(output_dir) / LOCK_DIR
    held = sorted(folder.glob(f"sub-*{HELD_SUFFIX}")) if name == "run" else [folder / f"{name}{HELD_SUFFIX}"]
    return next((p for p in held if p.is_file()), folder / f"{name}.lock")


def _held_by_a_live_run(locks: RunLocks, name: str) -> str:
    """What the ``.held`` file of ``name`` says of its holder (file systems without flock), or ""
    when there is none or its holder was a process of this machine that has ended."""
    text = locks.holder(name, patience_s=0.0)
    pid, host = _holder_pid(text)
    if not text or (pid is not None and host == socket.gethostname() and not pid_alive(pid)):
        return ""
    return text


def participant_lock_holder(output_dir: Path, subject: str) -> str:
    """Whether a run holds participant ``subject``'s lock in ``output_dir`` (``--reports-only``
    leaves a participant being processed to its run): what the holder wrote in the lock file
    (``pid N on HOST since ...``; ``holder unknown`` when it wrote nothing), ``""`` when the lock is
    free or there is none. Probed with an exclusive non-blocking flock given back at once: a
    participant run taking the lock in that instant tries again (:func:`lock_participants`).
    Creates nothing."""
    fd = _open_to_probe(Path(output_dir) / LOCK_DIR / f"sub-{subject}.lock")
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return RunLocks(output_dir).holder(f"sub-{subject}", patience_s=0.0) or "holder unknown"
    except OSError:  # a file system without flock: its .held file says it (below)
        pass
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the probe's lock
    return _held_by_a_live_run(_held_files(output_dir), f"sub-{subject}")


def _holder_pid(text: str) -> tuple[int | None, str]:
    """(pid, host) from a lock file's ``pid N on HOST since ...``."""
    parts = text.split()
    if len(parts) >= 4 and parts[0] == "pid" and parts[1].isdigit() and parts[2] == "on":
        return int(parts[1]), parts[3]
    return None, ""


def _processes_with_open(path: Path) -> list[int]:
    """Processes of this machine with ``path`` open (Linux /proc; those this user may see)."""
    target = os.path.realpath(path)
    out = []
    for proc in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else ():
        try:
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                out.append(int(proc.name))
        except OSError:
            continue
    return sorted(out)


def _few(subjects: list[str], shown: int = 3) -> str:
    """``sub-03, sub-04 and 5 more``: a few labels of a list that may be a cohort's."""
    names = ", ".join(f"sub-{s}" for s in subjects[:shown])
    return names + (f" and {len(subjects) - shown} more" if len(subjects) > shown else "")


def lock_participants(locks: RunLocks, jobs: list, wait: bool, prog: str = "geomorph-bids") -> tuple[list, list, list]:
    """Take each participant's lock: (jobs whose participant this run holds, failures
    (:class:`~geomorph_bids.cli.failures.Failure`) of the participants another run holds (skip
    mode), jobs to do after waiting (``--lock-wait``: the participant another run holds and every
    one after it in sorted order, whose locks are then taken in that order))."""
    from .failures import Failure

    busy: dict[str, str] = {}
    stale: dict[str, str] = {}
    subjects = sorted({j.subject for j in jobs})
    deferred: list[str] = []  # --lock-wait: the participants after the first held one, not taken yet
    if wait:  # in order, up to the first lock another holds: this run then waits only for locks above
        # every one it holds, as does each run it waits for, so no runs wait in a circle (A holds sub-01
        # and waits for sub-02, B holds sub-02 and waits for sub-03, C holds sub-03 and waits for sub-01)
        held = []
        for i, subject in enumerate(subjects):
            if not locks.try_lock(f"sub-{subject}"):
                time.sleep(PROBE_PAUSE_S)  # once more after a pause: a probe (participant_lock_holder) is not a run
                if not locks.try_lock(f"sub-{subject}"):
                    held, deferred = [subject], subjects[i + 1:]
                    break
    else:
        held = [s for s in subjects if not locks.try_lock(f"sub-{s}")]
        if held:  # once more after a pause, as above
            time.sleep(PROBE_PAUSE_S)
            held = [s for s in held if not locks.try_lock(f"sub-{s}")]
    for subject in held:
        why = locks.stale(f"sub-{subject}")
        if why:
            stale[subject] = why
        else:
            busy[subject] = locks.holder(f"sub-{subject}")
    mine = [j for j in jobs if j.subject not in busy and j.subject not in stale and j.subject not in deferred]
    later = [j for j in jobs if j.subject in busy or j.subject in deferred] if wait else []
    skipped = [Failure(j.subject, j.session, ",".join(sorted(j.inputs.hemis)) or "L,R",
                       f"not processed: its lock {locks.path('sub-' + j.subject)} is stale: {stale[j.subject]}")
               for j in jobs if j.subject in stale]
    skipped += [] if wait else [
        Failure(j.subject, j.session, ",".join(sorted(j.inputs.hemis)) or "L,R",
                f"skipped: another geomorph-bids run is processing this participant "
                f"({busy[j.subject] or 'holder unknown'}; lock {locks.path('sub-' + j.subject)}); "
                "rerun when it has finished, or pass --lock-wait to wait for it")
        for j in jobs if j.subject in busy]
    for subject, holder in busy.items():
        if wait:
            after = (f"; so will the {len(deferred)} participant(s) after it ({_few(deferred)}), whose locks are "
                     "taken in order after it (runs waiting for each other's participants never wait in a circle)"
                     if deferred else "")
            say(f"{prog}: sub-{subject}: another geomorph-bids run is processing it ({holder or 'holder unknown'}); "
                f"it will be done after that run, once this run's other participants are finished{after}",
                flush=True)
    return mine, skipped, later
