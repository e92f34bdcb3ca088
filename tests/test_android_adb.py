"""android_bench.adb against the real adb command-line contract, with tiny /bin/sh stand-ins for adb."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from mobileisp.android_bench.adb import (
    Adb,
    AdbCommandError,
    AdbDevice,
    AdbError,
    AdbNotFoundError,
    AdbTimeoutError,
    AmbiguousDeviceError,
    DeviceNotFoundError,
    DeviceStateError,
    find_adb,
    parse_devices,
    parse_getprop,
    quote_for_device,
)
from mobileisp.errors import MobileISPError

SERIAL = "8A1X0ABC"


def make_adb(folder: Path, body: str, name: str = "adb") -> Path:
    """An executable /bin/sh script standing in for adb; it logs its argv (one arg per line) to argv.log."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    log = folder / "argv.log"
    path.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{log}'\n"
        + body + "\n"
    )
    path.chmod(0o755)
    return path


def logged_argv(folder: Path) -> list[str]:
    return (folder / "argv.log").read_text().splitlines()


# ------------------------------------------------------------------------------------------ parse_devices


DEVICES_OUTPUT = """\
* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
8A1X0ABC               device usb:1-1 product:shiba model:Pixel_8 device:shiba transport_id:3
R3CW70ABCDE            unauthorized usb:1-2 transport_id:4
RZ8T11XYZ              no permissions (missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html] usb:1-3 transport_id:5
emulator-5554          offline transport_id:6
192.168.1.20:5555      device product:e3qxxx model:SM_S928B device:e3q transport_id:7
AAA1                   recovery usb:1-4 product:husky model:Pixel_8_Pro device:husky transport_id:8
AAA2                   sideload usb:1-5 transport_id:9
AAA3                   bootloader
AAA4                   rescue transport_id:10
AAA5                   authorizing usb:1-6 transport_id:11
AAA6                   connecting transport_id:12
AAA7                   host

"""


def test_parse_devices_every_state_and_daemon_lines():
    devs = parse_devices(DEVICES_OUTPUT)
    assert [d.serial for d in devs] == [
        "8A1X0ABC", "R3CW70ABCDE", "RZ8T11XYZ", "emulator-5554", "192.168.1.20:5555",
        "AAA1", "AAA2", "AAA3", "AAA4", "AAA5", "AAA6", "AAA7",
    ]
    assert [d.state for d in devs] == [
        "device", "unauthorized", "no permissions", "offline", "device", "recovery", "sideload",
        "bootloader", "rescue", "authorizing", "connecting", "host",
    ]
    pixel = devs[0]
    assert pixel == AdbDevice("8A1X0ABC", "device", model="Pixel_8", product="shiba", device="shiba",
                              transport_id="3", usb="1-1")
    noperm = devs[2]
    assert noperm.usb == "1-3" and noperm.transport_id == "5" and noperm.model is None
    assert noperm.detail.startswith("no permissions (missing udev rules?")
    assert "developer.android.com/tools/device.html" in noperm.detail
    assert devs[4].model == "SM_S928B" and devs[4].usb is None
    assert devs[7].transport_id is None and devs[7].usb is None
    assert pixel.to_dict()["model"] == "Pixel_8"


def test_parse_devices_plain_format_crlf_and_empty():
    text = "List of devices attached\r\n8A1X0ABC\tdevice\r\nemulator-5556\tunauthorized\r\n\r\n"
    devs = parse_devices(text)
    assert [(d.serial, d.state) for d in devs] == [("8A1X0ABC", "device"), ("emulator-5556", "unauthorized")]
    assert parse_devices("List of devices attached\n\n") == []
    assert parse_devices("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
                         "List of devices attached\n") == []
    mismatch = "adb server version (40) doesn't match this client (41); killing...\nList of devices attached\nX1 device\n"
    assert [(d.serial, d.state) for d in parse_devices(mismatch)] == [("X1", "device")]


# ------------------------------------------------------------------------------------------ quoting

NASTY = [
    ["echo", "plain"],
    ["ls", "/data/local/tmp/my model.tflite"],
    ["echo", "it's", 'say "hi"', "$HOME", "$(reboot)", "`id`", "a;b", "x|y", "a&&b", "*", "~", "#c"],
    ["echo", "two\nlines", "tab\there", "", "'", '"', "\\", "--graph=/data/local/tmp/a b.tflite"],
    ["env", "ADSP_LIBRARY_PATH=/data/local/tmp/qnn;/vendor/dsp/cdsp", "x"],
    ["echo", "--external_delegate_options=backend_type:htp;htp_precision:0;htp_performance_mode:2"],
    ["echo", "ünïcødé", "名前"],
]


@pytest.mark.parametrize("argv", NASTY)
def test_quote_for_device_round_trips_through_shlex(argv):
    assert shlex.split(quote_for_device(argv)) == argv


@pytest.mark.parametrize("argv", NASTY)
def test_quote_for_device_round_trips_through_a_real_posix_shell(argv):
    # What the phone's mksh does with the line: parse it, nothing executed or expanded.
    line = quote_for_device(["printf", "%s\\0"] + argv[1:])
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == argv[1:]


def test_quote_for_device_is_plain_for_safe_words_and_rejects_empty():
    assert quote_for_device(["taskset", "f0", "/data/local/tmp/benchmark_model", "--num_threads=4"]) == \
        "taskset f0 /data/local/tmp/benchmark_model --num_threads=4"
    assert quote_for_device(["ls", "a b"]) == "ls 'a b'"
    with pytest.raises(ValueError):
        quote_for_device([])


# ------------------------------------------------------------------------------------------ find_adb


def _clean_env(monkeypatch, path: str = "") -> None:
    for var in ("ADB", "ANDROID_HOME", "ANDROID_SDK_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", path)


def test_find_adb_lookup_order(tmp_path, monkeypatch):
    explicit = make_adb(tmp_path / "explicit", "exit 0")
    env_adb = make_adb(tmp_path / "env", "exit 0")
    home = make_adb(tmp_path / "home" / "platform-tools", "exit 0")
    sdk_root = make_adb(tmp_path / "sdkroot" / "platform-tools", "exit 0")
    on_path = make_adb(tmp_path / "bin", "exit 0")
    _clean_env(monkeypatch, str(tmp_path / "bin"))
    monkeypatch.setenv("ADB", str(env_adb))
    monkeypatch.setenv("ANDROID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANDROID_SDK_ROOT", str(tmp_path / "sdkroot"))
    assert find_adb(explicit) == explicit
    assert find_adb() == env_adb
    monkeypatch.delenv("ADB")
    assert find_adb() == home
    monkeypatch.delenv("ANDROID_HOME")
    assert find_adb() == sdk_root
    monkeypatch.delenv("ANDROID_SDK_ROOT")
    assert find_adb() == on_path
    # A folder given explicitly that holds adb is accepted too.
    assert find_adb(tmp_path / "explicit") == explicit


def test_find_adb_skips_sdk_without_adb_and_reports_where_it_looked(tmp_path, monkeypatch):
    _clean_env(monkeypatch, str(tmp_path / "empty-bin"))
    monkeypatch.setenv("ANDROID_HOME", str(tmp_path / "nosdk"))
    with pytest.raises(AdbNotFoundError) as err:
        find_adb()
    msg = str(err.value)
    assert "--adb" in msg and "$ADB" in msg and "PATH" in msg
    assert "$ANDROID_HOME/platform-tools/adb" in msg and str(tmp_path / "nosdk") in msg
    assert "$ANDROID_SDK_ROOT/platform-tools/adb (unset)" in msg
    assert "\n" not in msg
    assert isinstance(err.value, MobileISPError)


def test_find_adb_explicit_or_env_must_be_executable(tmp_path, monkeypatch):
    _clean_env(monkeypatch, str(make_adb(tmp_path / "bin", "exit 0").parent))
    not_exec = tmp_path / "adb-not-exec"
    not_exec.write_text("#!/bin/sh\n")
    not_exec.chmod(0o644)
    with pytest.raises(AdbNotFoundError, match="--adb .*adb-not-exec: not an executable file"):
        find_adb(not_exec)
    with pytest.raises(AdbNotFoundError, match="--adb .*missing: not an executable file"):
        find_adb(tmp_path / "missing")
    monkeypatch.setenv("ADB", str(tmp_path / "missing"))
    with pytest.raises(AdbNotFoundError, match=r"\$ADB=.*missing"):
        find_adb()


def test_run_maps_missing_or_unexecutable_binary_to_adb_not_found(tmp_path):
    with pytest.raises(AdbNotFoundError, match="not found"):
        Adb(tmp_path / "gone").devices()
    noexec = tmp_path / "adb"
    noexec.write_text("#!/bin/sh\necho hi\n")
    noexec.chmod(0o644)
    with pytest.raises(AdbNotFoundError, match="permission denied"):
        Adb(noexec, SERIAL).shell(["echo", "hi"])


# ------------------------------------------------------------------------------------------ error mapping

UNAUTHORIZED_TAIL = (
    "This adb server's $ADB_VENDOR_KEYS is not set\n"
    "Try 'adb kill-server' if that seems wrong.\n"
    "Otherwise check for a confirmation dialog on your device.\n"
)

ERRORS = [
    ("device offline", DeviceStateError, [SERIAL, "offline", "replug"]),
    ("device unauthorized.\n" + UNAUTHORIZED_TAIL, DeviceStateError,
     [f"phone {SERIAL} is unauthorized", "accept the USB debugging (RSA key) prompt"]),
    ("insufficient permissions for device: missing udev rules? user is in the plugdev group\n"
     "See [http://developer.android.com/tools/device.html] for more information", DeviceStateError,
     ["udev", "plugdev"]),
    (f"device '{SERIAL}' not found", DeviceNotFoundError, [SERIAL, "disconnected"]),
    ("no devices/emulators found", DeviceNotFoundError, ["no Android phone is connected"]),
    ("more than one device/emulator", AmbiguousDeviceError, ["--device SERIAL"]),
    ("device still authorizing", DeviceStateError, ["authorizing"]),
    (f"error: failed to get feature set: device '{SERIAL}' not found", DeviceNotFoundError, ["disconnected"]),
]


@pytest.mark.parametrize("prefix", ["adb: ", "error: "])
@pytest.mark.parametrize("text,cls,fragments", ERRORS)
def test_adb_errors_map_to_classes_with_one_line_advice(tmp_path, prefix, text, cls, fragments):
    (tmp_path / "err.txt").write_text(prefix + text + "\n")
    exe = make_adb(tmp_path, f"cat '{tmp_path / 'err.txt'}' >&2\nexit 1")
    adb = Adb(exe, SERIAL)
    for call in (lambda: adb.shell(["echo", "x"], check=False), lambda: adb.get_state(),
                 lambda: adb.push(exe, "/data/local/tmp/x"), lambda: adb.run(["get-serialno"], check=False)):
        with pytest.raises(cls) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg
        for frag in fragments:
            assert frag in msg


def test_adb_server_start_failure_is_an_adb_error(tmp_path):
    exe = make_adb(tmp_path, "echo '* daemon not running; starting now at tcp:5037' >&2\n"
                             "echo 'adb: cannot connect to daemon at tcp:5037: Connection refused' >&2\nexit 1")
    with pytest.raises(AdbError, match="adb server could not be started.*kill-server"):
        Adb(exe).devices()


# ------------------------------------------------------------------------------------------ shell


def test_shell_sends_one_quoted_line_after_serial(tmp_path):
    exe = make_adb(tmp_path, "echo out; echo err >&2; exit 0")
    result = Adb(exe, SERIAL).shell(["ls", "/data/local/tmp/a b;rm -rf /", "$X"])
    assert logged_argv(tmp_path) == ["-s", SERIAL, "shell", "ls '/data/local/tmp/a b;rm -rf /' '$X'"]
    assert result.argv == ["ls", "/data/local/tmp/a b;rm -rf /", "$X"]
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")


def test_shell_exit_code_and_check(tmp_path):
    exe = make_adb(tmp_path, "echo partial; echo 'first problem' >&2; echo 'ERROR: Benchmarking failed.' >&2; exit 3")
    adb = Adb(exe, SERIAL)
    res = adb.shell(["/data/local/tmp/benchmark_model", "--graph=x"], check=False)
    assert res.returncode == 3 and res.stdout == "partial\n" and "Benchmarking failed" in res.stderr
    with pytest.raises(AdbCommandError) as err:
        adb.shell(["/data/local/tmp/benchmark_model", "--graph=x"])
    msg = str(err.value)
    assert "/data/local/tmp/benchmark_model --graph=x" in msg
    assert "exit 3" in msg and "ERROR: Benchmarking failed." in msg and "first problem" not in msg
    assert SERIAL in msg


def test_shell_command_not_found_is_a_command_error(tmp_path):
    exe = make_adb(tmp_path, "echo '/system/bin/sh: frobnicate: inaccessible or not found' >&2; exit 127")
    with pytest.raises(AdbCommandError, match="exit 127.*inaccessible or not found"):
        Adb(exe, SERIAL).shell(["frobnicate"])


def test_no_serial_means_no_dash_s(tmp_path):
    exe = make_adb(tmp_path, "echo device")
    assert Adb(exe).get_state() == "device"
    assert logged_argv(tmp_path) == ["get-state"]
    assert Adb(exe).for_device("Z9").serial == "Z9"


def test_timeout_names_command_and_limit(tmp_path):
    exe = make_adb(tmp_path, "exec sleep 20")
    adb = Adb(exe, SERIAL, timeout_s=30)
    start = time.monotonic()
    with pytest.raises(AdbTimeoutError) as err:
        adb.shell(["dumpsys", "thermalservice"], timeout_s=0.3)
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert f"adb -s {SERIAL} shell" in msg and "dumpsys thermalservice" in msg and "0.3 s" in msg


def test_timeout_kills_children_that_hold_the_pipes(tmp_path):
    # adb's child (not exec'd) keeps stdout open; the whole process group must go.
    exe = make_adb(tmp_path, "sleep 20 &\nwait")
    start = time.monotonic()
    with pytest.raises(AdbTimeoutError, match="1 s"):
        Adb(exe, SERIAL, timeout_s=1).devices()
    assert time.monotonic() - start < 5


# ------------------------------------------------------------------------------------------ state / devices


def test_get_state_bad_states(tmp_path):
    for state, fragment in [("recovery", "reboot it to Android"), ("bootloader", "bootloader mode"),
                            ("sideload", "sideload mode"), ("offline", "offline")]:
        exe = make_adb(tmp_path / state, f"echo {state}")
        with pytest.raises(DeviceStateError, match=fragment):
            Adb(exe, SERIAL).get_state()
    exe = make_adb(tmp_path / "ok", "echo device")
    assert Adb(exe, SERIAL).get_state() == "device"


def test_devices_runs_without_serial(tmp_path):
    (tmp_path / "devs.txt").write_text(DEVICES_OUTPUT)
    exe = make_adb(tmp_path, f"cat '{tmp_path / 'devs.txt'}'")
    devs = Adb(exe, SERIAL).devices()
    assert logged_argv(tmp_path) == ["devices", "-l"]
    assert len(devs) == 12 and devs[1].state == "unauthorized"


# ------------------------------------------------------------------------------------------ push / pull


def test_push_passes_paths_and_checks_local(tmp_path):
    exe = make_adb(tmp_path / "bin", 'echo "$4: 1 file pushed, 0 skipped. 12.3 MB/s (1234 bytes in 0.001s)"')
    local = tmp_path / "my model.tflite"
    local.write_bytes(b"x" * 10)
    Adb(exe, SERIAL).push(local, "/data/local/tmp/w/my model.tflite")
    assert logged_argv(tmp_path / "bin") == ["-s", SERIAL, "push", str(local), "/data/local/tmp/w/my model.tflite"]
    with pytest.raises(AdbCommandError, match="cannot push .*missing.tflite: no such file"):
        Adb(exe, SERIAL).push(tmp_path / "missing.tflite", "/data/local/tmp/x")


def test_push_failure_names_command_and_adb_line(tmp_path):
    exe = make_adb(tmp_path / "bin", "echo \"adb: error: failed to copy '$4' to '$5': remote couldn't create file: Permission denied\" >&2; exit 1")
    local = tmp_path / "m.tflite"
    local.write_bytes(b"1")
    with pytest.raises(AdbCommandError) as err:
        Adb(exe, SERIAL).push(local, "/system/m.tflite")
    msg = str(err.value)
    assert "adb -s 8A1X0ABC push" in msg and "exit 1" in msg and "Permission denied" in msg


def test_pull_is_atomic(tmp_path):
    src = tmp_path / "phone-output.bin"
    src.write_bytes(b"\x00\x01\x02output")
    # Real adb pull: REMOTE LOCAL; the stub copies a host file to LOCAL.
    exe = make_adb(tmp_path / "bin", f"cp '{src}' \"$5\" && echo \"$4: 1 file pulled, 0 skipped.\"")
    dest = tmp_path / "out" / "result.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    Adb(exe, SERIAL).pull("/data/local/tmp/w/out.bin", dest)
    assert dest.read_bytes() == b"\x00\x01\x02output"
    argv = logged_argv(tmp_path / "bin")
    assert argv[:4] == ["-s", SERIAL, "pull", "/data/local/tmp/w/out.bin"]
    assert Path(argv[4]).parent == dest.parent and Path(argv[4]) != dest  # written to a temp name first
    assert sorted(p.name for p in dest.parent.iterdir()) == ["result.bin"]


def test_failed_pull_leaves_nothing(tmp_path):
    # adb writes part of the file, then fails.
    exe = make_adb(tmp_path / "bin", "printf partial > \"$5\"\n"
                   "echo \"adb: error: failed to stat remote object '$4': No such file or directory\" >&2; exit 1")
    dest = tmp_path / "out" / "result.bin"
    with pytest.raises(AdbCommandError, match="failed to stat remote object '/data/local/tmp/nope'"):
        Adb(exe, SERIAL).pull("/data/local/tmp/nope", dest)
    assert list(dest.parent.iterdir()) == []


def test_pull_when_phone_vanishes(tmp_path):
    exe = make_adb(tmp_path / "bin", f"echo \"adb: error: failed to get feature set: device '{SERIAL}' not found\" >&2; exit 1")
    dest = tmp_path / "o.bin"
    with pytest.raises(DeviceNotFoundError, match="disconnected"):
        Adb(exe, SERIAL).pull("/x", dest)
    assert not dest.exists() and list(tmp_path.glob(".o.bin*")) == []


# ------------------------------------------------------------------------------------------ getprop / exists

GETPROP = (
    "[dalvik.vm.heapsize]: [512m]\r\n"
    "[persist.sys.locale]: []\r\n"
    "[ro.build.version.release]: [14]\r\n"
    "[ro.build.version.sdk]: [34]\r\n"
    "[ro.product.marketname]: [Galaxy S24 [5G]]\r\n"
    "[ro.product.model]: [SM-S921U]\r\n"
    "[ro.soc.manufacturer]: [QTI]\r\n"
    "[ro.soc.model]: [SM8650]\r\n"
    "[vendor.multi]: [first line\r\n"
    "second [line]]\r\n"
    "garbage line\r\n"
    "[ro.board.platform]: [pineapple]\r\n"
)


def test_parse_getprop():
    props = parse_getprop(GETPROP)
    assert props == {
        "dalvik.vm.heapsize": "512m",
        "persist.sys.locale": "",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.product.marketname": "Galaxy S24 [5G]",
        "ro.product.model": "SM-S921U",
        "ro.soc.manufacturer": "QTI",
        "ro.soc.model": "SM8650",
        "vendor.multi": "first line\nsecond [line]",
        "ro.board.platform": "pineapple",
    }
    assert parse_getprop("") == {}
    assert parse_getprop("[a]: [unterminated\n[b]: [2]\n") == {"a": "unterminated", "b": "2"}


def test_getprops_one_call(tmp_path):
    (tmp_path / "props.txt").write_text(GETPROP)
    exe = make_adb(tmp_path / "bin", f"cat '{tmp_path / 'props.txt'}'")
    props = Adb(exe, SERIAL).getprops()
    assert logged_argv(tmp_path / "bin") == ["-s", SERIAL, "shell", "getprop"]
    assert props["ro.soc.model"] == "SM8650" and props["ro.product.marketname"] == "Galaxy S24 [5G]"


def test_exists(tmp_path):
    exe = make_adb(tmp_path / "bin", 'case "$4" in\n'
                   "  \"test -e /data/local/tmp/qnn/libQnnHtp.so\") exit 0;;\n"
                   "  \"test -e '/data/local/tmp/odd dir'\") exit 0;;\n"
                   "  \"test -e /boom\") echo 'test: weird' >&2; exit 2;;\n"
                   "  *) exit 1;;\nesac")
    adb = Adb(exe, SERIAL)
    assert adb.exists("/data/local/tmp/qnn/libQnnHtp.so") is True
    assert adb.exists("/data/local/tmp/odd dir") is True
    assert adb.exists("/data/local/tmp/qnn/libQnnGpu.so") is False
    with pytest.raises(AdbCommandError, match="exit 2"):
        adb.exists("/boom")

