"""The adb transport: find the adb binary, list phones, run device commands, push and pull files.

Everything goes through the REAL ``adb`` command line as an argument list (never a host shell), each
call with a timeout. Device commands are sent as ONE line quoted for the phone's ``/system/bin/sh``
(mksh): ``adb shell`` joins its arguments with spaces and the device shell parses the result, so an
unquoted argument with a space, ``;`` or ``$`` would be split or executed there.

adb's own failures (it prints ``adb: ...`` since platform-tools 33, ``error: ...`` before) are mapped to
one-line :class:`AdbError` subclasses that say what to do: unlock the phone, accept the RSA prompt,
install udev rules, reconnect the cable.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from mobileisp.errors import MobileISPError

__all__ = [
    "Adb",
    "AdbCommandError",
    "AdbDevice",
    "AdbError",
    "AdbNotFoundError",
    "AdbTimeoutError",
    "AmbiguousDeviceError",
    "DeviceNotFoundError",
    "DeviceStateError",
    "ShellResult",
    "find_adb",
    "parse_getprop",
    "parse_devices",
    "quote_for_device",
    "state_problem",
]


class AdbError(MobileISPError):
    """Any failure of the adb transport (one line, says what to do)."""


class AdbNotFoundError(AdbError):
    """No usable adb executable (or the one given cannot be executed)."""


class DeviceStateError(AdbError):
    """The phone is attached but not usable: offline, unauthorized, no permissions, recovery/bootloader..."""


class DeviceNotFoundError(AdbError):
    """No phone, the requested phone is not attached (or disconnected mid-run), or several without a serial."""


class AmbiguousDeviceError(DeviceNotFoundError):
    """Several phones qualify and none was named."""


class AdbTimeoutError(AdbError):
    """An adb call did not finish within its timeout."""


class AdbCommandError(AdbError):
    """A device command, push or pull failed (names the command, its last error line and exit code)."""


# ---------------------------------------------------------------------------------------------------
# Locating adb


def _executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_adb(explicit: str | os.PathLike | None = None) -> Path:
    """Locate the adb executable.

    Order: ``explicit`` (the ``--adb`` option), ``$ADB``, ``$ANDROID_HOME/platform-tools/adb``,
    ``$ANDROID_SDK_ROOT/platform-tools/adb``, then ``adb`` on ``PATH``. An explicit path or ``$ADB``
    that is not an executable file is an error (not silently skipped): the user asked for it.

    Raises:
        AdbNotFoundError: nothing usable; the message lists every place looked at.
    """
    exe_name = "adb.exe" if os.name == "nt" else "adb"
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if path.is_dir() and _executable_file(path / exe_name):
            return path / exe_name
        if not _executable_file(path):
            raise AdbNotFoundError(f"--adb {path}: not an executable file")
        return path
    env_adb = os.environ.get("ADB")
    if env_adb:
        path = Path(env_adb).expanduser()
        if not _executable_file(path):
            raise AdbNotFoundError(f"$ADB={env_adb}: not an executable file")
        return path
    looked = ["--adb", "$ADB"]
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        root = os.environ.get(var)
        if root:
            path = Path(root).expanduser() / "platform-tools" / exe_name
            if _executable_file(path):
                return path
            looked.append(f"${var}/platform-tools/adb ({path})")
        else:
            looked.append(f"${var}/platform-tools/adb (unset)")
    which = shutil.which("adb")
    if which:
        return Path(which)
    looked.append("PATH")
    raise AdbNotFoundError(
        "adb not found (looked at " + ", ".join(looked) + "): install Android platform-tools "
        "(https://developer.android.com/tools/releases/platform-tools) and pass --adb PATH or put adb on PATH"
    )


def quote_for_device(argv: Sequence[str]) -> str:
    """The single device-shell line for ``argv``: every argument quoted for a POSIX shell (mksh).

    ``shlex.split(quote_for_device(argv)) == list(argv)`` for any strings, including spaces, quotes,
    ``$``, ``;``, backticks and newlines.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("empty device command")
    return " ".join(shlex.quote(a) for a in argv)


# ---------------------------------------------------------------------------------------------------
# Device states


def state_problem(serial: str, state: str, detail: str | None = None) -> str | None:
    """A one-line explanation of why a phone in ``state`` cannot be used, or None for ``device``."""
    s = state.strip()
    if s == "device":
        return None
    if s == "offline":
        return (f"phone {serial} is offline: unlock it, replug the USB cable (or run `adb reconnect`), "
                "then retry")
    if s == "unauthorized":
        return (f"phone {serial} is unauthorized: unlock it and accept the USB debugging (RSA key) prompt, "
                "then retry")
    if s.startswith("no permissions") or s.startswith("insufficient permissions"):
        return (f"adb has no permission to open phone {serial} (missing udev rules?): install the Android udev "
                "rules (e.g. package android-sdk-platform-tools-common), add your user to the plugdev group, "
                "replug the phone, then retry")
    if s in ("recovery", "sideload", "bootloader", "rescue", "fastbootd"):
        return f"phone {serial} is in {s} mode: reboot it to Android (e.g. `adb -s {serial} reboot`), then retry"
    if s == "authorizing":
        return f"phone {serial} is still authorizing: unlock it, accept the USB debugging prompt, then retry"
    if s == "connecting":
        return f"phone {serial} is still connecting: wait a few seconds, then retry"
    if s == "host":
        return f"{serial} is an adb host connection, not a phone"
    return f"phone {serial} is in state {s!r} (expected 'device'): reconnect it, then retry"


# ---------------------------------------------------------------------------------------------------
# `adb devices -l`


@dataclass
class AdbDevice:
    """One line of ``adb devices -l``.

    Attributes:
        serial: the adb serial (USB serial, ``host:port`` for TCP, ``emulator-5554``).
        state: ``device``, ``offline``, ``unauthorized``, ``no permissions``, ``recovery``, ``sideload``,
            ``bootloader``, ``rescue``, ``authorizing``, ``connecting``, ``host`` (or what adb printed).
        model: ``model:`` field, adb's spelling (spaces replaced by ``_``); None when absent.
        product, device, transport_id, usb: the other ``key:value`` fields; None when absent.
        detail: the full state text when adb explains it (``no permissions (missing udev rules? ...)``).
    """

    serial: str
    state: str
    model: str | None = None
    product: str | None = None
    device: str | None = None
    transport_id: str | None = None
    usb: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


_FIELD_RE = re.compile(r"^(usb|product|model|device|transport_id):(.*)$")
_NOISE_PREFIXES = ("list of devices attached", "*", "adb server", "adb: ", "error: ", "daemon ")


def parse_devices(text: str) -> list[AdbDevice]:
    """Parse the output of ``adb devices -l`` (or plain ``adb devices``).

    Tolerates the header, blank lines and the daemon start lines (``* daemon not running; starting now
    at tcp:5037``, ``* daemon started successfully``, ``adb server version (..) doesn't match ...``).
    """
    out: list[AdbDevice] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line or line.lower().startswith(_NOISE_PREFIXES):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        serial, rest = parts[0], parts[1:]
        state_words: list[str] = []
        fields: dict[str, str] = {}
        for i, tok in enumerate(rest):
            m = _FIELD_RE.match(tok)
            if m and (state_words or i > 0):
                for t in rest[i:]:
                    fm = _FIELD_RE.match(t)
                    if fm:
                        fields[fm.group(1)] = fm.group(2)
                break
            state_words.append(tok)
        state_text = " ".join(state_words)
        detail = None
        state = state_text
        if state_text.startswith("no permissions"):
            state, detail = "no permissions", state_text
        out.append(AdbDevice(
            serial=serial, state=state,
            model=fields.get("model"), product=fields.get("product"), device=fields.get("device"),
            transport_id=fields.get("transport_id"), usb=fields.get("usb"), detail=detail,
        ))
    return out


# ---------------------------------------------------------------------------------------------------
# The client


@dataclass
class ShellResult:
    """The outcome of one adb call.

    Attributes:
        argv: for :meth:`Adb.run` the adb arguments (after the executable and ``-s SERIAL``); for
            :meth:`Adb.shell` the device command's argv.
        returncode: adb's exit code (for ``shell``, the remote command's, shell protocol v2).
        stdout, stderr: decoded text (UTF-8, undecodable bytes replaced; CRLF normalised to LF).
    """

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


# adb's own error lines (after the `adb: ` / `error: ` prefix, possibly `error: failed to get feature set: `).
_ADB_PREFIX_RE = re.compile(r"^(?:adb: |error: )(?:error: )?(?:failed to get feature set: )?(?P<msg>.*)$")


class Adb:
    """A client for one adb executable, optionally bound to one phone (``-s SERIAL``).

    Args:
        executable: path of adb (see :func:`find_adb`).
        serial: the phone; None lets adb pick the only attached one.
        timeout_s: default timeout of every call, in seconds.
    """

    def __init__(self, executable: str | os.PathLike, serial: str | None = None, timeout_s: float = 60.0):
        self.executable = Path(executable)
        self.serial = serial
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"Adb({str(self.executable)!r}, serial={self.serial!r})"

    def for_device(self, serial: str) -> "Adb":
        """A client for the same adb bound to ``serial``."""
        return Adb(self.executable, serial, self.timeout_s)

    @property
    def _who(self) -> str:
        return self.serial or "the phone"

    def _describe(self, args: Sequence[str], serial: bool = True) -> str:
        head = ["adb"] + (["-s", self.serial] if serial and self.serial else [])
        text = shlex.join(head + list(args))
        return text if len(text) <= 200 else text[:197] + "..."

    # -- raw call ------------------------------------------------------------------------------------

    def _call(self, args: Sequence[str], timeout_s: float | None, serial: bool = True) -> ShellResult:
        args = [str(a) for a in args]
        argv = [str(self.executable)] + (["-s", self.serial] if serial and self.serial else []) + args
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        try:
            # A new session so that a timeout can kill adb and anything it spawned (a stuck child would
            # otherwise keep the pipes open and hang communicate()).
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise AdbNotFoundError(f"adb executable {self.executable} not found ({exc.strerror})") from None
        except PermissionError:
            raise AdbNotFoundError(f"adb executable {self.executable} cannot be executed (permission denied)") from None
        except OSError as exc:
            raise AdbNotFoundError(f"adb executable {self.executable} cannot be run: {exc.strerror or exc}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise AdbTimeoutError(
                f"`{self._describe(args, serial)}` did not finish within {timeout:g} s: the phone may be busy "
                "or hung; replug it or raise the timeout"
            ) from None
        except BaseException:
            _kill(proc)
            raise
        return ShellResult(args, proc.returncode, _decode(out), _decode(err))

    def _raise_transport_error(self, result: ShellResult) -> None:
        """Raise the matching error if adb itself (not the remote command) failed."""
        if result.returncode == 0:
            return
        for line in result.stderr.split("\n"):  # adb's own errors go to stderr, whatever the remote printed
            m = _ADB_PREFIX_RE.match(line.strip())
            if not m:
                continue
            msg = m.group("msg").strip().lower()
            if msg.startswith("device offline"):
                raise DeviceStateError(state_problem(self._who, "offline"))
            if msg.startswith("device unauthorized"):
                raise DeviceStateError(state_problem(self._who, "unauthorized"))
            if msg.startswith("device still authorizing"):
                raise DeviceStateError(state_problem(self._who, "authorizing"))
            if msg.startswith("device still connecting"):
                raise DeviceStateError(state_problem(self._who, "connecting"))
            if msg.startswith("insufficient permissions for device"):
                raise DeviceStateError(state_problem(self._who, "no permissions"))
            dm = re.match(r"device '(.*)' not found", m.group("msg").strip())
            if dm:
                raise DeviceNotFoundError(
                    f"phone {dm.group(1)} is not connected (disconnected?): check the USB cable and "
                    "`adb devices`, then retry"
                )
            if msg.startswith("no devices/emulators found") or msg.startswith("no devices found"):
                raise DeviceNotFoundError(
                    "no Android phone is connected: plug one in with USB debugging enabled, then retry"
                )
            if msg.startswith("more than one device"):
                raise AmbiguousDeviceError(
                    "more than one phone is connected: choose one with --device SERIAL (see `adb devices`)"
                )
            if "cannot connect to daemon" in msg or "failed to start daemon" in msg:
                raise AdbError(f"the adb server could not be started ({m.group('msg').strip()}): "
                               "run `adb kill-server` and retry")

    def _command_error(self, what: str, result: ShellResult) -> AdbCommandError:
        lines = [ln.strip() for ln in result.stderr.split("\n") if ln.strip()]
        if not lines:
            lines = [ln.strip() for ln in result.stdout.split("\n") if ln.strip()]
        last = lines[-1] if lines else "no output"
        return AdbCommandError(f"`{what}` failed on {self._who} (exit {result.returncode}): {last}")

    def run(self, args: Sequence[str], *, timeout_s: float | None = None, check: bool = True) -> ShellResult:
        """Run ``adb [-s SERIAL] ARGS...`` and return its result.

        adb's own failures (device offline/unauthorized/not found, ...) always raise; with ``check`` any
        other non-zero exit raises :class:`AdbCommandError`.
        """
        result = self._call(args, timeout_s)
        self._raise_transport_error(result)
        if check and result.returncode != 0:
            raise self._command_error(self._describe(args), result)
        return result

    # -- queries -------------------------------------------------------------------------------------

    def devices(self) -> list[AdbDevice]:
        """Every attached phone/emulator as listed by ``adb devices -l`` (whatever its state)."""
        result = self._call(["devices", "-l"], None, serial=False)
        if result.returncode != 0:
            self._raise_transport_error(result)
            raise self._command_error("adb devices -l", result)
        return parse_devices(result.stdout)

    def get_state(self) -> str:
        """``adb get-state`` for this phone: returns ``"device"``; any other state raises.

        Raises:
            DeviceStateError: offline, unauthorized, no permissions, recovery/bootloader/sideload...
            DeviceNotFoundError: not connected, none at all, or several and no serial.
        """
        result = self.run(["get-state"], check=True)
        state = result.stdout.strip().split("\n")[-1].strip() if result.stdout.strip() else ""
        problem = state_problem(self._who, state or "unknown")
        if problem:
            raise DeviceStateError(problem)
        return state

    def shell(self, argv: Sequence[str], *, timeout_s: float | None = None, check: bool = True) -> ShellResult:
        """Run one device command: ``adb shell '<argv quoted for mksh>'``.

        Args:
            argv: the device command and its arguments (never a pre-joined shell line).
            check: raise :class:`AdbCommandError` when the remote command exits non-zero.

        Returns:
            ShellResult whose ``argv`` is the device argv and ``returncode`` the remote exit code.
        """
        argv = [str(a) for a in argv]
        line = quote_for_device(argv)
        result = self._call(["shell", line], timeout_s)
        self._raise_transport_error(result)
        result = ShellResult(argv, result.returncode, result.stdout, result.stderr)
        if check and result.returncode != 0:
            raise self._command_error(shlex.join(argv)[:200], result)
        return result

    def push(self, local: str | os.PathLike, remote: str, *, timeout_s: float | None = None) -> None:
        """Copy the host file ``local`` to ``remote`` on the phone (mode bits are kept by adb)."""
        local = Path(local)
        if not local.is_file():
            raise AdbCommandError(f"cannot push {local}: no such file")
        self.run(["push", str(local), str(remote)], timeout_s=timeout_s, check=True)

    def pull(self, remote: str, local: str | os.PathLike, *, timeout_s: float | None = None) -> None:
        """Copy ``remote`` from the phone to the host file ``local``, atomically.

        adb writes into a temporary file next to ``local`` which is renamed onto ``local`` only when the
        transfer succeeded, so a failed or interrupted pull never leaves a partial file. An existing
        ``local`` is replaced (this is a transfer into a work folder, not a user-facing output).
        """
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".pull", dir=local.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        tmp.unlink()
        try:
            self.run(["pull", str(remote), str(tmp)], timeout_s=timeout_s, check=True)
            if not tmp.is_file():
                raise AdbCommandError(f"`adb pull {remote}` on {self._who} produced no file")
            os.replace(tmp, local)
        finally:
            if tmp.exists():
                tmp.unlink()

    def getprops(self) -> dict[str, str]:
        """All system properties, from one ``getprop`` call (``[key]: [value]`` lines)."""
        return parse_getprop(self.shell(["getprop"]).stdout)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists on the phone (``test -e``)."""
        result = self.shell(["test", "-e", str(path)], check=False)
        if result.returncode in (0, 1):
            return result.returncode == 0
        raise self._command_error(f"test -e {path}", result)


_PROP_START_RE = re.compile(r"^\[(?P<k>[^\]]+)\]: \[(?P<rest>.*)$")


def parse_getprop(text: str) -> dict[str, str]:
    """Parse ``getprop`` output into a dict.

    Each property is ``[key]: [value]``; a value may be empty, contain ``]`` (``[Galaxy S24 [5G]]``:
    the value ends at the line's LAST ``]``) or continue over several lines until a line ends with
    ``]``. Lines that are not properties are ignored.
    """
    props: dict[str, str] = {}
    key: str | None = None  # a property whose value is still open (multi-line)
    buf: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        m = _PROP_START_RE.match(line)
        if m and key is None:
            rest = m.group("rest")
            if rest.endswith("]"):
                props[m.group("k")] = rest[:-1]
            else:
                key, buf = m.group("k"), [rest]
        elif key is not None and m:  # an unterminated value followed by a new property: keep what we have
            props[key] = "\n".join(buf)
            rest = m.group("rest")
            if rest.endswith("]"):
                props[m.group("k")] = rest[:-1]
                key, buf = None, []
            else:
                key, buf = m.group("k"), [rest]
        elif key is not None:
            if line.endswith("]"):
                buf.append(line[:-1])
                props[key] = "\n".join(buf)
                key, buf = None, []
            else:
                buf.append(line)
    return props


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace").replace("\r\n", "\n")


def _kill(proc: subprocess.Popen) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a grandchild outside the group keeps a pipe
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        proc.wait()
