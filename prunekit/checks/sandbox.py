"""A sandbox per submission: the process the grading worker runs in, and how it is stopped.

Always (any Unix):

* its own session and process group, killed as a whole with SIGKILL at the deadline (no SIGINT to ignore);
* resource limits: address space, CPU seconds, file size, open files, no core files;
* a scrubbed environment (no grader variables, tokens or paths) and a private, fresh working folder;
* when the grader runs as root, the worker drops to the unprivileged user ``nobody``.

Where ``bwrap`` (bubblewrap, Debian package ``bubblewrap``) is installed, additionally:

* a read-only view of the system and of the Python environment, private ``/tmp``, ``/proc`` and ``/dev``;
* no network, no view of other processes (own PID namespace: everything in it dies with it);
* empty folders in place of ``solutions/``, ``prunekit/checks/`` (checks, references), ``tests/``, ``.git``,
  the submissions being graded and the grader's home.

:func:`protections` lists what is present, and the grade report says which protections were missing.

Example:
    >>> sorted(protections(use_bwrap=False))[:2]
    ['clean environment', 'hard deadline (SIGKILL of the process group)']
"""
from __future__ import annotations

import os
import pwd
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKER_FILES = ("worker.py", "wire.py")
TOKEN_ENV = "PRUNEKIT_SANDBOX"


@dataclass
class Limits:
    """Resource limits of one worker (the whole process tree inherits them)."""

    memory_bytes: int = 6 * 2**30      # address space: torch maps a lot before it allocates anything
    cpu_seconds: int = 600
    file_bytes: int = 256 * 2**20
    open_files: int = 256
    processes: int = 256               # per user (the unprivileged user, when the grader is root)


def bwrap_path() -> str | None:
    """The bubblewrap executable, if installed and usable here."""
    path = shutil.which("bwrap")
    if not path:
        return None
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-all", *_user_args(), "true"],
                           capture_output=True, timeout=30)
    return path if probe.returncode == 0 else None


def _user_args() -> list[str]:
    return ["--unshare-user", "--uid", "65534", "--gid", "65534"] if os.geteuid() == 0 else []


def protections(use_bwrap: bool) -> list[str]:
    """The protections a worker gets on this machine."""
    found = ["hard deadline (SIGKILL of the process group)", "resource limits", "clean environment",
             "private working folder"]
    if os.geteuid() == 0 and (use_bwrap or _others_can_run_python()):
        found.append("unprivileged user")
    if use_bwrap:
        found += ["read-only system", "no network", "private /tmp", "own PID namespace",
                  "solutions, checks, other submissions and grader files hidden"]
    return found


def missing_protections(use_bwrap: bool) -> list[str]:
    """What a worker lacks without bubblewrap (empty when it runs under bwrap)."""
    missing = [] if os.geteuid() != 0 or use_bwrap or _others_can_run_python() else [
        "unprivileged user (the Python environment is not readable by `nobody`; the worker runs as root)"]
    if use_bwrap:
        return missing
    return missing + ["read-only system (code can write where the user may)", "no network",
            "hiding solutions/, prunekit/checks and other submissions (readable by the worker)",
            "own PID namespace (a process that leaves the session can outlive the deadline)"]


def _others_can_run_python() -> bool:
    """Can an unprivileged user run this interpreter and read its packages (every folder above them o+x)?"""
    import stat

    for target in {Path(sys.executable).resolve(), Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
                   ROOT}:
        for folder in [target, *target.parents]:
            try:
                if folder.is_dir() and not folder.stat().st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
    return True


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@dataclass
class Sandbox:
    """One running worker. ``start()``, talk over ``proc.stdin``/``proc.stdout``, then ``kill()``.

    Args:
        hide: extra folders the worker must not see (the submissions being graded), under bwrap.
        use_bwrap: None = use it when installed.
    """

    hide: list[Path] = field(default_factory=list)
    use_bwrap: bool | None = None
    limits: Limits = field(default_factory=Limits)
    proc: subprocess.Popen | None = None
    dropped: bool = False
    box: Path | None = None
    token: str = ""

    def start(self) -> subprocess.Popen:
        if self.use_bwrap is None:
            self.use_bwrap = bwrap_path() is not None
        self.box = Path(tempfile.mkdtemp(prefix="prunekit-box-"))
        lib = self.box / "lib"
        lib.mkdir()
        (self.box / "tmp").mkdir()
        for name in WORKER_FILES:
            shutil.copyfile(HERE / name, lib / name)
        self.token = secrets.token_hex(8)
        inside = Path("/tmp/box") if self.use_bwrap else self.box
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(inside), "TMPDIR": str(inside / "tmp"),
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PRUNEKIT_FAST": "1",
               "PRUNEKIT_STRICT": "0", "PRUNEKIT_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1", TOKEN_ENV: self.token}
        command = [sys.executable, "-s", str(inside / "lib" / "worker.py"), str(inside / "worker.log")]
        drop = os.geteuid() == 0 and not self.use_bwrap and _others_can_run_python()
        self.dropped = drop or (os.geteuid() == 0 and self.use_bwrap)
        if drop:
            uid, gid = _nobody()
            os.chown(self.box, uid, gid)
            for path in (lib, self.box / "tmp"):
                os.chown(path, uid, gid)
        if self.use_bwrap:
            command = self._bwrap_command() + command
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=self.box if not self.use_bwrap else "/",
                                     start_new_session=True, close_fds=True,
                                     preexec_fn=lambda: self._limit(drop))
        return self.proc

    def _bwrap_command(self) -> list[str]:
        args = [bwrap_path() or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--new-session", *_user_args()]
        hidden = [ROOT / "solutions", ROOT / "prunekit" / "checks", ROOT / "tests", ROOT / ".git",
                  Path.home(), *self.hide]
        needed = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), (ROOT / "prunekit").resolve()]
        for path in needed:  # a checkout or environment under /tmp (a CI clone) must stay visible, read-only
            if Path("/tmp") in path.parents:
                args += ["--ro-bind", str(path), str(path)]
        for path in hidden:
            path = path.resolve()
            if path.is_dir() and path != Path("/") and not any(n == path or path in n.parents for n in needed):
                args += ["--tmpfs", str(path.resolve())]
        args += ["--bind", str(self.box), "/tmp/box", "--chdir", "/tmp/box"]
        return args

    def _limit(self, drop: bool) -> None:
        """Runs in the child between fork and exec: limits, then (as root without bwrap) become nobody."""
        limits = self.limits
        for kind, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, limits.cpu_seconds),
                            (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NOFILE, limits.open_files),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(kind, (value, value))
        if drop:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
            uid, gid = _nobody()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

    def kill(self, grace: float = 0.0) -> None:
        """SIGKILL the worker's whole process group (and, without bwrap, every process carrying its token);
        delete its folder. With ``grace``, first close its input and give it that many seconds to exit
        (a worker that ends normally lets its sandbox reap it, so its CPU time is accounted)."""
        if self.proc is not None and grace > 0:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            if not self.use_bwrap:
                _kill_by_token(self.token)
            self.proc = None
        if self.box is not None:
            shutil.rmtree(self.box, ignore_errors=True)
            self.box = None


def _kill_by_token(token: str) -> int:
    """SIGKILL processes whose environment carries ``token`` (the ones that left the process group)."""
    killed = 0
    needle = f"{TOKEN_ENV}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed
