"""The fake ``adb`` executable: adb client + server + a phone's adbd and /system/bin/sh (mksh) + toybox.

Run as ``python fake_adb.py ARGS...`` by the wrapper ``FakeAdb`` writes (``root/bin/adb``) with
``FAKE_ADB_HOME`` pointing at the emulator's state folder. Standard library only, so a call starts fast;
numpy/LiteRT are imported only when the device runs the fake ``benchmark_model``.

Real behaviour followed (adb ``transport.cpp``/``commandline.cpp``, toybox, mksh):
- ``devices -l``: ``List of devices attached``, one ``"%-22s %s"`` line per transport sorted by serial, then
  `` usb:DEVPATH product:P model:M device:D transport_id:N`` (model: non-alphanumerics -> ``_``; product,
  model, device only once the device is online), then an empty line.
- Transport selection (``acquire_one_transport``): ``-t`` id, ``-s``/``$ANDROID_SERIAL`` serial, otherwise
  the only transport; two or more -> ``adb: more than one device/emulator``; a no-permissions transport is
  skipped and leaves the insufficient-permissions text as the error; offline/unauthorized/authorizing/
  connecting give their messages. Errors are printed ``adb: <error>`` on stderr, exit 1.
- ``shell``: arguments joined with single spaces, the line parsed by the device's POSIX shell; shell
  protocol v2 (separate stdout/stderr, remote exit status). ``exec-out``: stdout only.
- ``push``/``pull``: mode bits kept; ``LOCAL: 1 file pushed, 0 skipped. X MB/s (N bytes in T.TTTs)``.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shlex
import shutil
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

VERSION = ("Android Debug Bridge version 1.0.41\nVersion 35.0.1-11580240\nInstalled as {path}\n"
           "Running on Linux 6.8.0-48-generic (x86_64)\n")
NOPERM_SHORT = ("no permissions (missing udev rules? user is in the plugdev group); "
                "see [http://developer.android.com/tools/device.html]")
NOPERM_LONG = ("insufficient permissions for device: missing udev rules? user is in the plugdev group\n"
               "See [http://developer.android.com/tools/device.html] for more information")
UNAUTHORIZED = ("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                "Try 'adb kill-server' if that seems wrong.\n"
                "Otherwise check for a confirmation dialog on your device.")
SH = "/system/bin/sh"
READ_ONLY = ("/system", "/vendor", "/odm", "/product", "/apex")
ONLINE = ("device", "recovery", "rescue", "sideload")
SIGNALS = {134: "Aborted", 139: "Segmentation fault"}


class AdbError(Exception):
    """An error adb itself reports (``adb: <message>``, exit 1)."""


class Emulator:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.out = sys.stdout
        self.err = sys.stderr

    # ---------------------------------------------------------------------------------------------- state
    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with open(self.home / "state.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads((self.home / "state.json").read_text())
            yield state
            tmp = self.home / "state.json.tmp"
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.home / "state.json")

    def log(self, name: str, entry: Any) -> None:
        with open(self.home / "log" / name, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(json.dumps(entry) + "\n")

    def fs(self, serial: str) -> Path:
        return self.home / "phones" / serial / "fs"

    # ----------------------------------------------------------------------------------------------- main
    def main(self, argv: list[str]) -> int:
        self.log("calls.jsonl", argv)
        try:
            return self.dispatch(argv)
        except AdbError as e:
            self.err.write(f"adb: {e}\n")
            return 1

    def dispatch(self, argv: list[str]) -> int:
        serial = os.environ.get("ANDROID_SERIAL") or None
        transport_id = 0
        args = list(argv)
        while args and args[0].startswith("-") and args[0] not in ("--version", "--help"):
            opt = args.pop(0)
            if opt in ("-s", "-t", "-H", "-P", "-L"):
                if not args:
                    raise AdbError(f"{opt} requires an argument")
                value = args.pop(0)
                if opt == "-s":
                    serial = value
                elif opt == "-t":
                    try:
                        transport_id = int(value)
                    except ValueError:
                        raise AdbError(f"invalid transport id '{value}'") from None
            elif opt.startswith("-s") and len(opt) > 2:
                serial = opt[2:]
            elif opt not in ("-d", "-e", "-a", "--one-device"):
                raise AdbError(f"unknown option {opt}")
        if not args:
            self.err.write("adb: usage: no command specified\n")
            return 1
        cmd, rest = args[0], args[1:]
        if cmd in ("version", "--version"):
            self.out.write(VERSION.format(path=self.home / "bin" / "adb"))
            return 0
        if cmd == "kill-server":
            with self.locked() as state:
                state["server_running"] = False
            return 0
        self.ensure_server()
        if cmd == "start-server":
            return 0
        if cmd == "devices":
            return self.devices("-l" in rest)
        if cmd.startswith("wait-for-"):
            return self.wait_for(serial, transport_id)
        per_device = {"get-state", "get-serialno", "get-devpath", "shell", "exec-out", "push", "pull"}
        if cmd not in per_device:
            raise AdbError(f"unknown command {cmd}")
        phone = self.acquire(serial, transport_id, accept_any_state=cmd in ("get-state", "get-serialno",
                                                                             "get-devpath"))
        if cmd == "get-state":
            self.out.write(phone["state"] + "\n")
            return 0
        if cmd == "get-serialno":
            self.out.write(phone["serial"] + "\n")
            return 0
        if cmd == "get-devpath":
            self.out.write(f"usb:{phone['usb']}\n")
            return 0
        if phone["state"] != "device" and phone["state"] != "recovery":
            raise AdbError("error: closed")
        if cmd in ("shell", "exec-out"):
            return self.shell(phone, rest, merge=cmd == "exec-out")
        if cmd == "push":
            return self.push(phone, rest)
        return self.pull(phone, rest)

    def ensure_server(self) -> None:
        with self.locked() as state:
            if not state.get("server_running", True):
                self.err.write("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n")
                state["server_running"] = True

    # ------------------------------------------------------------------------------------------ transports
    def visible(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        phones = []
        for phone in state["phones"].values():
            limit = phone.get("faults", {}).get("disconnect_after")
            if limit is not None and phone.get("served", 0) >= limit:
                continue
            phones.append(phone)
        return sorted(phones, key=lambda p: p["serial"])

    def devices(self, long: bool) -> int:
        with self.locked() as state:
            phones = self.visible(state)
        lines = ["List of devices attached\n"]
        for p in phones:
            name = NOPERM_SHORT if p["state"] == "no permissions" else p["state"]
            if not long:
                lines.append(f"{p['serial']}\t{name}\n")
                continue
            line = "%-22s %s" % (p["serial"], name)
            line += f" usb:{p['usb']}" if p.get("usb") else ""
            if p["state"] in ONLINE:
                props = p["props"]
                for key, prop, alnum in (("product:", "ro.product.name", False),
                                         ("model:", "ro.product.model", True),
                                         ("device:", "ro.product.device", False)):
                    value = props.get(prop, "")
                    if value:
                        line += " " + key + ("".join(c if c.isalnum() else "_" for c in value) if alnum
                                             else value.replace("\n", "_"))
            lines.append(line + f" transport_id:{p['transport_id']}\n")
        self.out.write("".join(lines) + "\n")
        return 0

    def acquire(self, serial: str | None, transport_id: int, accept_any_state: bool = False) -> dict[str, Any]:
        with self.locked() as state:
            if transport_id:
                error = f"no device with transport id '{transport_id}'"
            elif serial:
                error = f"device '{serial}' not found"
            else:
                error = "no devices/emulators found"
            result = None
            for p in self.visible(state):
                if p["state"] == "no permissions":
                    error = NOPERM_LONG
                    continue
                if transport_id:
                    if p["transport_id"] == transport_id:
                        result = p
                        break
                elif serial:
                    if serial in (p["serial"], f"usb:{p.get('usb')}"):
                        result = p
                        break
                else:
                    if result is not None:
                        raise AdbError("more than one device/emulator")
                    result = p
            if result is None:
                raise AdbError(error)
            if not accept_any_state or result["state"] in ("unauthorized", "offline"):
                messages = {"offline": "device offline", "unauthorized": UNAUTHORIZED,
                            "authorizing": "device still authorizing", "connecting": "device still connecting"}
                if result["state"] in messages:
                    raise AdbError(messages[result["state"]])
            result["served"] = result.get("served", 0) + 1
            return dict(result)

    def wait_for(self, serial: str | None, transport_id: int) -> int:
        deadline = time.monotonic() + float(os.environ.get("FAKE_ADB_WAIT_S", "30"))
        while True:
            try:
                phone = self.acquire(serial, transport_id)
                if phone["state"] == "device":
                    return 0
            except AdbError as e:
                if "more than one" in str(e):
                    raise
            if time.monotonic() > deadline:
                return 1
            time.sleep(0.2)

    # ------------------------------------------------------------------------------------------ push/pull
    def host(self, phone: dict[str, Any], device_path: str) -> Path:
        """Host path of a device path (relative paths resolve against adbd's cwd '/')."""
        parts = [p for p in ("/" + device_path).split("/") if p not in ("", ".")]
        clean: list[str] = []
        for p in parts:
            if p == "..":
                if clean:
                    clean.pop()
            else:
                clean.append(p)
        return self.fs(phone["serial"]).joinpath(*clean) if clean else self.fs(phone["serial"])

    def push(self, phone: dict[str, Any], args: list[str]) -> int:
        args = [a for a in args if a not in ("--sync", "-p", "-a", "-z", "-Z", "--no-compress")]
        if len(args) < 2:
            raise AdbError("push requires an argument")
        *sources, remote = args
        target = self.host(phone, remote)
        for local in sources:
            src = Path(local)
            if not src.exists():
                raise AdbError(f"error: cannot stat '{local}': No such file or directory")
            dest_dev = remote
            if remote.endswith("/") or target.is_dir() or len(sources) > 1:
                dest_dev = remote.rstrip("/") + "/" + src.name
            if dest_dev.startswith(READ_ONLY):
                raise AdbError(f"error: failed to copy '{local}' to '{dest_dev}': remote couldn't create file: "
                               "Read-only file system")
            dest = self.host(phone, dest_dev)
            start = time.perf_counter()
            count, size = self._copy(src, dest)
            self.out.write(f"{local}: {count} file{'s' if count != 1 else ''} pushed, 0 skipped. "
                           f"{self._rate(size, time.perf_counter() - start)}\n")
        return 0

    def pull(self, phone: dict[str, Any], args: list[str]) -> int:
        args = [a for a in args if a not in ("-a", "-z", "-Z", "--no-compress")]
        if not args:
            raise AdbError("pull requires an argument")
        *remotes, local = args if len(args) > 1 else (args + ["."])
        for remote in remotes:
            src = self.host(phone, remote)
            if not src.exists():
                raise AdbError(f"error: failed to stat remote object '{remote}': No such file or directory")
            dest = Path(local)
            if dest.is_dir():
                dest = dest / src.name
            elif not dest.parent.is_dir():
                raise AdbError(f"error: cannot create '{local}': No such file or directory")
            start = time.perf_counter()
            count, size = self._copy(src, dest)
            self.out.write(f"{remote}: {count} file{'s' if count != 1 else ''} pulled, 0 skipped. "
                           f"{self._rate(size, time.perf_counter() - start)}\n")
        return 0

    @staticmethod
    def _copy(src: Path, dest: Path) -> tuple[int, int]:
        if src.is_dir():
            count = size = 0
            for path in sorted(src.rglob("*")):
                if path.is_file():
                    c, s = Emulator._copy(path, dest / path.relative_to(src))
                    count, size = count + c, size + s
            return count, size
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        os.chmod(dest, stat.S_IMODE(src.stat().st_mode))
        return 1, src.stat().st_size

    @staticmethod
    def _rate(size: int, seconds: float) -> str:
        seconds = max(seconds, 1e-4)
        return f"{size / seconds / 1e6:.1f} MB/s ({size} bytes in {seconds:.3f}s)"

    # ------------------------------------------------------------------------------------------------ shell
    def shell(self, phone: dict[str, Any], args: list[str], merge: bool) -> int:
        while args and args[0] in ("-T", "-t", "-tt", "-x", "-n"):
            args = args[1:]
        line = " ".join(args)
        self.log("shell.jsonl", {"serial": phone["serial"], "line": line})
        slow = phone.get("faults", {}).get("slow_shell_s")
        if slow:
            time.sleep(float(slow))
        if not line.strip():
            return 0
        out = io.StringIO()
        err = out if merge else io.StringIO()
        code = Device(self, phone, out, err).run_line(line)
        self.out.write(out.getvalue())
        if not merge:
            self.err.write(err.getvalue())
        return code


class Device:
    """The phone's shell: parses one command line like mksh and runs toybox-like commands on the fake fs."""

    def __init__(self, emu: Emulator, phone: dict[str, Any], out: io.StringIO, err: io.StringIO) -> None:
        self.emu, self.phone, self.out, self.err = emu, phone, out, err

    def host(self, path: str) -> Path:
        return self.emu.host(self.phone, path)

    def run_line(self, line: str) -> int:
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        try:
            tokens = list(lex)
        except ValueError:
            self.err.write(f"{SH}: syntax error: unmatched quote\n")
            return 1
        code = 0
        command: list[str] = []
        skip = False
        for token in tokens + [";"]:
            if token in (";", "&&", "||"):
                if command and not skip:
                    code = self.run(command, {}, None)
                command = []
                skip = (token == "&&" and code != 0) or (token == "||" and code == 0)
            else:
                command.append(token)
        return code

    def run(self, argv: list[str], env: dict[str, str], mask: str | None) -> int:
        while argv and "=" in argv[0] and not argv[0].startswith("=") and "/" not in argv[0].split("=")[0]:
            key, _, value = argv.pop(0).partition("=")
            env = {**env, key: value}
        if not argv:
            return 0
        name, args = argv[0], argv[1:]
        if "/" in name:
            return self.execute(name, args, env, mask)
        handler = getattr(self, "cmd_" + name.replace("-", "_").replace("[", "bracket"), None)
        if handler is None:
            self.err.write(f"{SH}: {name}: inaccessible or not found\n")
            return 127
        return handler(args, env, mask)

    # ---------------------------------------------------------------------------------------- executing
    def execute(self, path: str, args: list[str], env: dict[str, str], mask: str | None) -> int:
        host = self.host(path)
        if not host.exists():
            self.err.write(f"{SH}: {path}: inaccessible or not found\n")
            return 127
        if host.is_dir() or not os.access(host, os.X_OK):
            self.err.write(f"{SH}: {path}: can't execute: {'Is a directory' if host.is_dir() else 'Permission denied'}\n")
            return 126
        with open(host, "rb") as f:
            head = f.read(64)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import fake_benchmark_model as fbm

        if not head.startswith(fbm.MARKER_PREFIX):
            self.err.write(f"{SH}: {path}: can't execute: Exec format error\n")
            return 126
        code, record = fbm.run([path] + args, resolve=self.host, phone=self.phone, env=env,
                               out=self.out, err=self.err)
        if code in SIGNALS:
            self.err.write(SIGNALS[code] + "\n")
        record.update(serial=self.phone["serial"], taskset=mask, env=env, binary=path,
                      faults=self.phone.get("faults", {}))
        self.emu.log("benchmarks.jsonl", record)
        return code

    def cmd_taskset(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if len(args) < 2 or args[0].startswith("-"):
            self.err.write("taskset: Needs 2 arguments\n")
            return 1
        try:
            value = int(args[0], 16)
        except ValueError:
            self.err.write(f"taskset: bad mask '{args[0]}'\n")
            return 1
        if value & ((1 << len(self.phone.get("cpu_max_freq_khz") or [0] * 8)) - 1) == 0:
            self.err.write("taskset: sched_setaffinity: Invalid argument\n")
            return 1
        return self.run(args[1:], env, args[0])

    def cmd_env(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        while args and "=" in args[0]:
            key, _, value = args.pop(0).partition("=")
            env = {**env, key: value}
        if not args:
            self.out.write("".join(f"{k}={v}\n" for k, v in env.items()))
            return 0
        return self.run(args, env, mask)

    def cmd_sh(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if len(args) >= 2 and args[0] == "-c":
            return self.run_line(args[1])
        return 0

    # -------------------------------------------------------------------------------------------- toybox
    def cmd_getprop(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        props = self.phone["props"]
        if not args:
            self.out.write("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
        else:
            self.out.write(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
        return 0

    def cmd_echo(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        newline = True
        if args and args[0] == "-n":
            newline, args = False, args[1:]
        self.out.write(" ".join(args) + ("\n" if newline else ""))
        return 0

    def cmd_true(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        return 0

    def cmd_false(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        return 1

    def cmd_id(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if "-u" in args:
            self.out.write("2000\n")
        else:
            self.out.write("uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),"
                           "1011(adb),1015(sdcard_rw),1028(sdcard_r),3001(net_bt_admin),3002(net_bt),"
                           "3003(inet),3006(net_bw_stats) context=u:r:shell:s0\n")
        return 0

    def cmd_nproc(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        self.out.write(f"{len(self.phone.get('cpu_max_freq_khz') or [0] * 8)}\n")
        return 0

    def cmd_uname(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        self.out.write("aarch64\n" if "-m" in args else "Linux\n")
        return 0

    def cmd_mkdir(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        parents = "-p" in args
        code = 0
        for path in [a for a in args if not a.startswith("-")]:
            host = self.host(path)
            if path.startswith(READ_ONLY) and not host.is_dir():
                self.err.write(f"mkdir: '{path}': Read-only file system\n")
                code = 1
            elif host.exists() and not parents:
                self.err.write(f"mkdir: '{path}': File exists\n")
                code = 1
            elif not parents and not host.parent.is_dir():
                self.err.write(f"mkdir: '{path}': No such file or directory\n")
                code = 1
            elif host.is_file():
                self.err.write(f"mkdir: '{path}': Not a directory\n")
                code = 1
            else:
                host.mkdir(parents=parents, exist_ok=parents)
        return code

    def cmd_rm(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        flags = "".join(a[1:] for a in args if a.startswith("-") and len(a) > 1)
        force, recursive = "f" in flags, "r" in flags or "R" in flags
        code = 0
        for path in [a for a in args if not a.startswith("-") or a == "-"]:
            host = self.host(path)
            if path.startswith(READ_ONLY) and host.exists():
                self.err.write(f"rm: {path}: Read-only file system\n")
                code = 1
            elif not host.exists() and not host.is_symlink():
                if not force:
                    self.err.write(f"rm: {path}: No such file or directory\n")
                    code = 1
            elif host.is_dir():
                if not recursive:
                    self.err.write(f"rm: {path}: Is a directory\n")
                    code = 1
                else:
                    shutil.rmtree(host)
            else:
                host.unlink()
        return code

    def cmd_chmod(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        args = [a for a in args if a not in ("-R",)]
        if len(args) < 2:
            self.err.write("chmod: Need 2 arguments (see \"chmod --help\")\n")
            return 1
        spec, code = args[0], 0
        for path in args[1:]:
            host = self.host(path)
            if not host.exists():
                self.err.write(f"chmod: {path}: No such file or directory\n")
                code = 1
                continue
            mode = _apply_mode(stat.S_IMODE(host.stat().st_mode), spec)
            if mode is None:
                self.err.write(f"chmod: bad mode '{spec}'\n")
                return 1
            os.chmod(host, mode)
        return code

    def cmd_ls(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        paths = [a for a in args if not a.startswith("-")] or ["/"]
        code = 0
        for path in paths:
            host = self.host(path)
            if not host.exists():
                self.err.write(f"ls: {path}: No such file or directory\n")
                code = 1
                continue
            entries = ([(path, host)] if host.is_file() or "d" in flags
                       else [(c.name, c) for c in sorted(host.iterdir()) if "a" in flags or not c.name.startswith(".")])
            for shown, entry in entries:
                if "l" in flags:
                    st = entry.stat()
                    kind = "d" if entry.is_dir() else "-"
                    self.out.write(f"{kind}{stat.filemode(st.st_mode)[1:]} 1 shell shell {st.st_size} "
                                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(st.st_mtime))} {shown}\n")
                else:
                    self.out.write(shown + "\n")
        return code

    def cmd_cat(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        code = 0
        for path in args:
            host = self.host(path)
            if host.is_dir():
                self.err.write(f"cat: {path}: Is a directory\n")
                code = 1
            elif not host.exists():
                self.err.write(f"cat: {path}: No such file or directory\n")
                code = 1
            else:
                self.out.write(host.read_bytes().decode("utf-8", "replace"))
        return code

    def cmd_test(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if len(args) == 2 and args[0] in ("-e", "-f", "-d", "-x", "-r", "-w", "-s"):
            host = self.host(args[1])
            checks = {"-e": host.exists, "-f": host.is_file, "-d": host.is_dir,
                      "-x": lambda: host.exists() and os.access(host, os.X_OK),
                      "-r": host.exists, "-w": lambda: host.exists() and not args[1].startswith(READ_ONLY),
                      "-s": lambda: host.is_file() and host.stat().st_size > 0}
            return 0 if checks[args[0]]() else 1
        if len(args) == 1:
            return 0 if args[0] else 1
        if len(args) == 3 and args[1] in ("=", "!="):
            return 0 if (args[0] == args[2]) == (args[1] == "=") else 1
        return 2

    def cmd_bracket(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if not args or args[-1] != "]":
            self.err.write("[: missing ]\n")
            return 2
        return self.cmd_test(args[:-1], env, mask)

    # ----------------------------------------------------------------------------------- framework services
    def cmd_cmd(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if not args:
            self.err.write("cmd: No service specified; use -l to list all running services. Use -w to start "
                           "and wait for a service.\n")
            return 20
        service, rest = args[0], args[1:]
        if service != "power":
            self.err.write(f"cmd: Can't find service: {service}\n")
            return 20
        sub = rest[0] if rest else None
        if sub == "set-fixed-performance-mode-enabled" and self.phone.get("fixed_performance", True):
            if len(rest) < 2 or rest[1] not in ("true", "false"):
                self.err.write(f"Error: expected true or false, got {rest[1] if len(rest) > 1 else ''}\n")
                return 255
            with self.emu.locked() as state:
                state["phones"][self.phone["serial"]]["fixed_performance_mode"] = rest[1] == "true"
            return 0
        self.out.write(f"Unknown command: {sub}\n")
        return 255

    def cmd_dumpsys(self, args: list[str], env: dict[str, str], mask: str | None) -> int:
        if not args or args[0] != "thermalservice":
            self.err.write(f"Can't find service: {args[0] if args else ''}\n")
            return 0
        with self.emu.locked() as state:
            phone = state["phones"][self.phone["serial"]]
            seq = phone.get("thermal") or [0]
            i = phone.get("thermal_i", 0)
            status = seq[min(i, len(seq) - 1)]
            phone["thermal_i"] = i + 1
        self.out.write(
            "IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 1\n\tkilled: false\n"
            "\tbroadcasts count: -1\nThermalStatusListeners:\n\tcallbacks: 1\n\tkilled: false\n"
            f"\tbroadcasts count: -1\nThermal Status: {status}\nCached temperatures:\n"
            f"\tTemperature{{mValue={31.5 + 4 * status}, mType=2, mName=battery, mStatus={status}}}\n"
            "HAL Ready: true\nHAL connection:\n\tThermalHAL AIDL 1  connected: yes\n"
            "Current temperatures from HAL:\n"
            f"\tTemperature{{mValue={38.0 + 6 * status}, mType=0, mName=cpu0, mStatus={status}}}\n"
            f"\tTemperature{{mValue={31.5 + 4 * status}, mType=2, mName=battery, mStatus={status}}}\n")
        return 0


def _apply_mode(mode: int, spec: str) -> int | None:
    """chmod MODE: octal, or symbolic ``[ugoa]*[+-=][rwx]+``."""
    if spec.isdigit():
        try:
            return int(spec, 8) & 0o7777
        except ValueError:
            return None
    for clause in spec.split(","):
        who = ""
        while clause and clause[0] in "ugoa":
            who, clause = who + clause[0], clause[1:]
        if len(clause) < 2 or clause[0] not in "+-=" or any(c not in "rwx" for c in clause[1:]):
            return None
        who = who or "a"
        bits = 0
        for c in clause[1:]:
            for w in ("u", "g", "o"):
                if w in who or "a" in who:
                    bits |= {"r": 4, "w": 2, "x": 1}[c] << {"u": 6, "g": 3, "o": 0}[w]
        if clause[0] == "+":
            mode |= bits
        elif clause[0] == "-":
            mode &= ~bits
        else:
            mode = bits
    return mode


def main() -> int:
    home = os.environ.get("FAKE_ADB_HOME")
    if not home:
        sys.stderr.write("fake adb: FAKE_ADB_HOME is not set\n")
        return 1
    return Emulator(Path(home)).main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
