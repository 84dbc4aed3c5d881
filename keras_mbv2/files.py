"""Writing outputs so that nothing is lost: temporary names renamed into place, the user's umask, safe folders.

Every file and folder keras_mbv2 writes goes through here:
- `atomic_write` / `write_file`: a temporary file beside the destination, renamed into place only when complete;
- `write_files`: several files into one folder, all or none;
- `output_folder`: a whole output folder built under a temporary name and renamed into place on success;
- `check_replaceable`: the rule for what an output may replace (never the current folder, one of its parents,
  the home folder or the filesystem root, and nothing that exists unless the caller was asked to replace it);
- `run_lock`: one run at a time in a run folder (a QAT run's checkpoints): a second is refused at once, naming
  the holder; the lock of a killed run is taken over.

Temporary names carry the writing process's id and host (`.kmbv2-tmp-<pid>-<host>-...`): a process killed while
writing (kill -9, a power cut) leaves one behind, and the next write into that folder removes it once its process
is gone (`sweep_leftovers`).

Files get mode 0666 and folders 0777, less the process umask (0644 / 0755 under the usual 022), as `open` and
`mkdir` would give: `tempfile` creates them 0600 / 0700, which other users and tools could not read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from typing import Callable, Iterator, Mapping

from .interrupts import cleanup_on_exit, raise_if_signalled

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_LEFTOVER = re.compile(r"^\.kmbv2-tmp-(\d+)-([0-9a-f]{8})-")
LOCK_FILE = ".keras-mbv2.lock"
_HELD: dict[str, int] = {}  # run folders this process holds: realpath -> nesting depth


def _temp_prefix(what: str = "") -> str:
    """The start of a temporary name of this process: `.kmbv2-tmp-<pid>-<host>-<what>`."""
    return f".kmbv2-tmp-{os.getpid()}-{_HOST}-{what}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def sweep_leftovers(directory: str) -> list[str]:
    """Remove the temporary files and folders that processes of this host left in `directory` when they were
    killed while writing (their process no longer runs); returns their names. Others' are never touched."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _LEFTOVER.match(name)
        if not match or match.group(2) != _HOST or _alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)
        removed.append(name)
    return removed


def _remove(path: str) -> None:
    """Remove a temporary file or folder of this process, if it is still there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(OSError):
            os.remove(path)


class OutputExistsError(ValueError):
    """An output would replace something that exists and the caller did not ask for that."""


def umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fix_mode(path: str, directory: bool) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def check_replaceable(path: str, flag: str, force: bool) -> None:
    """Refuse an output `path` that would replace something it should not (raises OutputExistsError naming
    `flag`): the current folder, a parent of it, the home folder or the root always; anything that exists
    (a non-empty folder, or a file) unless `force`; and a folder or parent folder this process cannot write."""
    target = os.path.realpath(path)
    cwd = os.path.realpath(os.getcwd())
    protected = {os.path.realpath(os.path.expanduser("~")), os.path.realpath(os.sep)}
    if target in protected or cwd == target or cwd.startswith(target.rstrip(os.sep) + os.sep):
        raise OutputExistsError(
            f"{flag} must not be the current folder, one of its parents, the home folder or the root, since the "
            f"output would replace it. Received: {flag} {path!r}"
        )
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise OutputExistsError(f"the folder of {flag} does not exist. Received: {flag} {path!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputExistsError(f"the folder of {flag} is not writable. Received: {flag} {path!r}")
    if os.path.isdir(target):
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputExistsError(f"{flag} is a folder that is not writable. Received: {flag} {path!r}")
        if os.listdir(target) and not force:
            raise OutputExistsError(
                f"{flag} exists and is not empty (pass --force to replace it). Received: {flag} {path!r}")
    elif os.path.lexists(target) and not force:
        raise OutputExistsError(f"{flag} exists (pass --force to replace it). Received: {flag} {path!r}")


#: Characters TensorFlow's checkpoint reader takes as a glob pattern: a run folder whose path holds one is written,
#: but its checkpoint is not found again on resume ("Failed to find any matching files for .../[1]/backup/...").
GLOB_CHARACTERS = "[]*?"


def check_checkpoint_folder(path: str, flag: str) -> None:
    """Refuse a run folder (`flag`, e.g. --run-dir or `out_dir`) whose path holds a character TensorFlow's
    checkpoint reader takes as a glob pattern (`GLOB_CHARACTERS`): a run there could not resume."""
    bad = [c for c in GLOB_CHARACTERS if c in str(path)]
    if bad:
        raise ValueError(f"{flag} must not contain {' or '.join(repr(c) for c in bad)}: TensorFlow reads a "
                         "checkpoint's path as a glob pattern, so a run there could not resume. Received: "
                         f"{flag} {str(path)!r}")


def check_receiving_folder(path: str, flag: str, names: list[str], force: bool) -> None:
    """Check a folder that will receive the files `names` (created if missing): it is a writable folder (or its
    parent is), and none of `names` exists in it unless `force` (raises OutputExistsError naming `flag`)."""
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputExistsError(f"{flag} is a folder that is not writable. Received: {flag} {path!r}")
        clash = sorted(set(os.listdir(path)) & set(names))
        if clash and not force:
            raise OutputExistsError(f"{flag} already holds {', '.join(clash)} (pass --force to replace them). "
                                    f"Received: {flag} {path!r}")
    elif os.path.lexists(path):
        raise OutputExistsError(f"{flag} must be a folder. Received: {flag} {path!r}")
    else:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputExistsError(f"the folder of {flag} does not exist or is not writable. Received: {flag} "
                                    f"{path!r}")


def atomic_write(path: str, write: Callable[[str], None], suffix: str | None = None) -> None:
    """Call `write(tmp)` for a temporary file beside `path`, then rename it into place with the umask's mode.
    Nothing is left behind when `write` fails or is interrupted."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"the output folder does not exist. Received: {path!r}")
    suffix = os.path.splitext(path)[1] if suffix is None else suffix
    sweep_leftovers(directory)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(), suffix=suffix, dir=directory)
    os.close(fd)
    try:
        with cleanup_on_exit(lambda: _remove(tmp)):  # even when the process is ended from a thread
            write(tmp)
            _fix_mode(tmp, directory=os.path.isdir(tmp))
            raise_if_signalled()
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_file(path: str, content: bytes | str) -> None:
    """Write `content` (bytes, or text as UTF-8 with "\\n" line ends) to `path` through `atomic_write`."""
    raw = content if isinstance(content, bytes) else content.encode()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(raw)

    atomic_write(path, write)


def write_files(folder: str, files: Mapping[str, bytes | str]) -> list[str]:
    """Write every `files[name]` into `folder` (created if needed), all or none: each is written under a
    temporary name first, and the folder is removed again if this call created it and failed."""
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    written = []
    try:
        sweep_leftovers(folder)
        tmp = tempfile.mkdtemp(prefix=_temp_prefix(), dir=folder)
        try:
            with cleanup_on_exit(lambda: _remove(tmp)):  # even when the process is ended from a thread
                for name, content in files.items():
                    with open(os.path.join(tmp, name), "wb") as f:
                        f.write(content if isinstance(content, bytes) else content.encode())
                    _fix_mode(os.path.join(tmp, name), directory=False)
                raise_if_signalled()
                for name in files:
                    os.replace(os.path.join(tmp, name), os.path.join(folder, name))
                    written.append(name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return written


@contextlib.contextmanager
def output_folder(path: str, flag: str = "--out", force: bool = False) -> Iterator[str]:
    """Build an output folder under a temporary name beside `path`; on success rename it into place.

    Checked first with `check_replaceable` (so `force` is needed to replace a non-empty folder). An existing
    folder is replaced only after the new one is complete: it is renamed aside, the new one renamed into place,
    and the old one removed. On failure or Ctrl-C the temporary folder is removed and `path` is untouched.
    """
    check_replaceable(path, flag, force)
    parent = os.path.dirname(os.path.abspath(path))
    sweep_leftovers(parent)
    work = tempfile.mkdtemp(prefix=_temp_prefix(os.path.basename(os.path.abspath(path)) + "-"), dir=parent)
    try:
        with cleanup_on_exit(lambda: _remove(work)):  # even when the process is ended from a thread
            yield work
        _fix_mode(work, directory=True)
        raise_if_signalled()
        if os.path.lexists(path):
            aside = tempfile.mkdtemp(prefix=_temp_prefix("replaced-"), dir=parent)
            os.replace(path, os.path.join(aside, "old"))
            try:
                os.replace(work, path)
            except BaseException:
                os.replace(os.path.join(aside, "old"), path)
                raise
            finally:
                shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(work, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class FolderLockedError(ValueError):
    """A run folder is in use by another running process."""


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def run_lock(folder: str, flag: str, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold `folder` (created if missing) for this run: an exclusive lock on `folder/.keras-mbv2.lock` (flock),
    which records the holder's process id, host and start time. A second run, in this process or another, is
    refused at once with FolderLockedError naming `flag`, the folder and the holder. The operating system
    releases the lock of a killed run; its file is then taken over, said in one line through `log`. Nested calls
    of one process on one folder share the lock. The file is removed when the run ends, and the folder too when
    this call created it and nothing was written into it."""
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    import fcntl  # POSIX: the platforms TensorFlow Lite Micro's tools and this package run on

    path = os.path.join(folder, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd) as f:
                holder = _holder(f.read())
            raise FolderLockedError(f"{flag} is in use by another run ({holder}): wait for it to end, or use "
                                    f"another folder. Received: {flag} {folder!r}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the holder removed it as we opened it: try the new one
            same = False
        if same:
            break
        os.close(fd)
    with os.fdopen(fd, "r+") as f:
        previous = f.read()
        if previous.strip() and log is not None:
            log(f"{flag} {folder}: took over the lock of a run that no longer runs ({_holder(previous)})")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}) + "\n")
        f.flush()
        _HELD[key] = 1

        def release() -> None:
            with contextlib.suppress(OSError):
                os.remove(path)  # while still holding the lock: the next run makes a new file
                if created and not os.listdir(folder):  # a run that wrote nothing leaves no empty folder
                    os.rmdir(folder)

        try:
            with cleanup_on_exit(release):  # even when the process is ended from a thread (`emergency_exit`)
                yield
        finally:
            del _HELD[key]
            release()
