"""android_bench.devices: profile files, matching, core masks, phone selection, accelerator filtering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mobileisp.android_bench.adb import (
    Adb,
    AdbDevice,
    AmbiguousDeviceError,
    DeviceNotFoundError,
    DeviceStateError,
    ShellResult,
    parse_devices,
)
from mobileisp.android_bench.devices import (
    PROFILE_DIR,
    Accelerator,
    AndroidDevice,
    ProfileError,
    list_android_devices,
    load_profile,
    load_profiles,
    match_profile,
    select_device,
    usable_accelerators,
)

# getprop excerpts as real phones print them (values from public getprop dumps).
PIXEL8 = {"ro.product.model": "Pixel 8", "ro.product.manufacturer": "Google", "ro.soc.manufacturer": "Google",
          "ro.soc.model": "Tensor G3", "ro.board.platform": "zuma", "ro.hardware": "shiba",
          "ro.build.version.release": "14", "ro.build.version.sdk": "34"}
PIXEL6 = {"ro.product.model": "Pixel 6", "ro.product.manufacturer": "Google", "ro.soc.model": "Tensor",
          "ro.board.platform": "gs101", "ro.hardware": "oriole", "ro.build.version.release": "15",
          "ro.build.version.sdk": "35"}
PIXEL9 = {"ro.product.model": "Pixel 9", "ro.product.manufacturer": "Google", "ro.soc.model": "Tensor G4",
          "ro.board.platform": "zumapro", "ro.hardware": "tokay", "ro.build.version.sdk": "35"}
S24_SNAPDRAGON = {"ro.product.model": "SM-S921U", "ro.product.manufacturer": "samsung", "ro.soc.manufacturer": "QTI",
                  "ro.soc.model": "SM8650", "ro.board.platform": "pineapple", "ro.hardware": "qcom",
                  "ro.build.version.release": "14", "ro.build.version.sdk": "34"}
S23 = {"ro.product.model": "SM-S911B", "ro.soc.model": "SM8550", "ro.board.platform": "kalama", "ro.hardware": "qcom"}
XIAOMI15 = {"ro.product.model": "24129PN74G", "ro.soc.model": "SM8750", "ro.board.platform": "sun",
            "ro.hardware": "qcom", "ro.build.version.sdk": "35"}
S24_EXYNOS = {"ro.product.model": "SM-S921B", "ro.soc.manufacturer": "Samsung", "ro.soc.model": "s5e9945",
              "ro.board.platform": "s5e9945", "ro.hardware": "s5e9945", "ro.build.version.sdk": "34"}
DIMENSITY9300 = {"ro.product.model": "24117RK2CG", "ro.product.manufacturer": "Xiaomi", "ro.soc.manufacturer": "Mediatek",
                 "ro.soc.model": "MT6989", "ro.board.platform": "mt6989", "ro.hardware": "mt6989",
                 "ro.build.version.release": "15", "ro.build.version.sdk": "35"}
OLD_PHONE = {"ro.product.model": "Moto G", "ro.hardware": "qcom", "ro.board.platform": "msm8953",
             "ro.build.version.sdk": "28"}

QNN = "/data/local/tmp/qnn"


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


class FakeAdb(Adb):
    """An Adb whose phones live in Python: {serial: (state, props, files)}; counts the calls made."""

    def __init__(self, phones: dict[str, tuple[str, dict, set]], serial: str | None = None, calls=None):
        super().__init__("/nonexistent/adb", serial)
        self.phones = phones
        self.calls = [] if calls is None else calls

    def for_device(self, serial):
        return FakeAdb(self.phones, serial, self.calls)

    def devices(self):
        self.calls.append(("devices",))
        return [AdbDevice(s, st, model=(p.get("ro.product.model") or "").replace(" ", "_") or None)
                for s, (st, p, _) in self.phones.items()]

    def shell(self, argv, *, timeout_s=None, check=True):
        self.calls.append((self.serial, *argv))
        state, props, files = self.phones[self.serial]
        if argv == ["getprop"]:
            text = "".join(f"[{k}]: [{v}]\n" for k, v in props.items())
            return ShellResult(list(argv), 0, text, "")
        if argv[:2] == ["test", "-e"]:
            return ShellResult(list(argv), 0 if argv[2] in files else 1, "", "")
        raise AssertionError(f"unexpected device command {argv}")


# ------------------------------------------------------------------------------------------ profile files


def test_shipped_profiles_load_and_are_sane(profiles):
    assert {"pixel", "snapdragon", "mediatek", "exynos", "generic"} <= set(profiles)
    for name, prof in profiles.items():
        assert prof.name == name
        assert prof.accelerators[0].name == "cpu"
        assert bin(int(prof.cpu_mask, 16)).count("1") == prof.threads
        for mask, threads in prof.cpu_masks.values():
            assert bin(int(mask, 16)).count("1") == threads
        nnapi = prof.accelerator("nnapi")
        if nnapi is not None:
            assert nnapi.max_sdk == 34
        d = prof.to_dict()
        assert d["name"] == name and d["accelerators"][0]["name"] == "cpu"
    htp = profiles["snapdragon"].accelerator("qnn-htp")
    assert htp.precisions == ("int8", "int8-io", "int16x8")
    assert f"{QNN}/libQnnTFLiteDelegate.so" in htp.requires
    assert dict(htp.env)["LD_LIBRARY_PATH"] == QNN and dict(htp.env)["ADSP_LIBRARY_PATH"].startswith(QNN)
    opts = [f for f in htp.flags if f.startswith("--external_delegate_options=")][0]
    assert "backend_type:htp" in opts and "htp_performance_mode:2" in opts and "htp_precision:0" in opts
    gpu = profiles["pixel"].accelerator("gpu")
    assert gpu.flags == ("--use_gpu=true", "--gpu_precision_loss_allowed=false")
    assert profiles["generic"].match == {}


def test_profiles_are_package_data():
    assert PROFILE_DIR.name == "profiles" and (PROFILE_DIR / "pixel.toml").is_file()


GOOD = """\
title = "Test phones"
cpu_mask = "0xF0"
threads = 4

[match]
"ro.soc.model" = ["X1*"]

[cpu_masks]
"X1B" = { mask = "c0", threads = 2 }

[[accelerators]]
name = "cpu"
flags = []

[[accelerators]]
name = "npu"
flags = ["--use_nnapi=true"]
requires = ["/vendor/lib64/libnpu.so"]
env = { LD_LIBRARY_PATH = "/data/local/tmp/npu" }
precisions = ["int8"]
max_sdk = 33
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_load_good_profile(tmp_path):
    prof = load_profile(write(tmp_path, "test", GOOD))
    assert prof.name == "test" and prof.cpu_mask == "f0" and prof.threads == 4
    assert prof.cpu_masks == {"X1B": ("c0", 2)}
    assert prof.fixed_performance is True and prof.cooldown_status == 0
    npu = prof.accelerators[1]
    assert npu == Accelerator("npu", ("--use_nnapi=true",), ("/vendor/lib64/libnpu.so",),
                              (("LD_LIBRARY_PATH", "/data/local/tmp/npu"),), ("int8",), 33)
    assert prof.accelerators[0].flags == ()


BAD = [
    ("title = [", "not valid TOML"),
    (GOOD.replace('title = "Test phones"\n', ""), "title: missing"),
    (GOOD.replace("threads = 4", "threads = 3"), "cpu_mask: threads = 3 but mask '0xF0' selects 4 cores"),
    (GOOD.replace('cpu_mask = "0xF0"', 'cpu_mask = "zz"'), "cpu_mask: cpu mask 'zz' is not hexadecimal"),
    (GOOD.replace('cpu_mask = "0xF0"', 'cpu_mask = "0"'), "selects no core"),
    (GOOD.replace('cpu_mask = "0xF0"', "cpu_mask = 240"), "must be a hex string"),
    (GOOD.replace('mask = "c0", threads = 2', 'mask = "c0", threads = 3'), "cpu_masks.X1B: threads = 3"),
    (GOOD.replace('name = "cpu"', 'name = "gpu"'), "accelerators[0].name: the first accelerator must be 'cpu'"),
    (GOOD.replace('name = "npu"', 'name = "cpu"'), "accelerators: duplicate accelerator 'cpu'"),
    (GOOD.replace('["--use_nnapi=true"]', '["use_nnapi"]'), "accelerators[1].flags: 'use_nnapi' is not a benchmark_model flag"),
    (GOOD.replace('precisions = ["int8"]', 'precisions = ["int4"]'), "accelerators[1].precisions: unknown precision 'int4'"),
    (GOOD.replace("max_sdk = 33", 'max_sdk = "33"'), "accelerators[1].max_sdk: must be a positive integer"),
    (GOOD.replace('["/vendor/lib64/libnpu.so"]', '["libnpu.so"]'), "must be an absolute device path"),
    (GOOD.replace("LD_LIBRARY_PATH =", '"BAD-NAME" ='), "not a valid environment variable name"),
    (GOOD.replace("max_sdk = 33", "max_sdk = 33\nflgs = []"), "accelerators[1].flgs: unknown key"),
    (GOOD + "cooldown = 1\n", "unknown key"),  # lands in the last accelerator table
    ('cooldown_status = 9\n' + GOOD, "cooldown_status: must be an integer 0..6"),
    ('fixed_performance = "yes"\n' + GOOD, "fixed_performance: must be true or false"),
    ('name = "other"\n' + GOOD, "name: 'other' must equal the file name 'test'"),
    (GOOD.replace('"ro.soc.model" = ["X1*"]', '"ro.soc.model" = "X1*"'), "match.ro.soc.model: must be a list"),
    ("accelerators = []\n" + GOOD.split("[[accelerators]]")[0], "accelerators: must be a non-empty array"),
]


@pytest.mark.parametrize("text,fragment", BAD)
def test_bad_profiles_name_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, "test", text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    msg = str(err.value)
    assert str(path) in msg and fragment in msg and "\n" not in msg


def test_load_profiles_folder_errors(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="holds no"):
        load_profiles(tmp_path / "empty")
    write(tmp_path / "mixed", "good", GOOD)
    write(tmp_path / "mixed", "bad", GOOD.replace("threads = 4", "threads = 5"))
    with pytest.raises(ProfileError, match=r"bad\.toml: cpu_mask"):
        load_profiles(tmp_path / "mixed")
    write(tmp_path / "one", "good", GOOD)
    assert list(load_profiles(tmp_path / "one")) == ["good"]


# ------------------------------------------------------------------------------------------ matching + masks


@pytest.mark.parametrize("props,expected,affinity", [
    (PIXEL6, "pixel", ("f0", 4)),
    (PIXEL8, "pixel", ("1f0", 5)),
    (PIXEL9, "pixel", ("f0", 4)),
    ({"ro.soc.model": "Tensor G5", "ro.board.platform": "laguna"}, "pixel", ("fc", 6)),
    ({"ro.hardware": "husky"}, "pixel", ("1f0", 5)),  # Android 11-: no ro.soc.model, codename still works
    (S24_SNAPDRAGON, "snapdragon", ("fc", 6)),
    (S23, "snapdragon", ("f8", 5)),
    (XIAOMI15, "snapdragon", ("c0", 2)),
    ({"ro.soc.model": "SM8450", "ro.board.platform": "taro"}, "snapdragon", ("f0", 4)),
    ({"ro.soc.model": "sm8650-ac"}, "snapdragon", ("fc", 6)),  # case-insensitive, suffixes
    (S24_EXYNOS, "exynos", ("3f0", 6)),
    ({"ro.soc.model": "s5e9925", "ro.hardware": "s5e9925"}, "exynos", ("f0", 4)),
    (DIMENSITY9300, "mediatek", ("f0", 4)),
    ({"ro.soc.model": "MT6985"}, "mediatek", ("f0", 4)),
])
def test_match_and_affinity(profiles, props, expected, affinity):
    prof = match_profile(props, profiles)
    assert prof is not None and prof.name == expected
    assert prof.affinity(props) == affinity


def test_unknown_phone_matches_nothing(profiles):
    assert match_profile(OLD_PHONE, profiles) is None
    assert match_profile({}, profiles) is None
    assert profiles["generic"].matches(PIXEL8) == 0


def test_most_specific_profile_wins(tmp_path):
    write(tmp_path, "a", GOOD.replace('"ro.soc.model" = ["X1*"]', '"ro.hardware" = ["hw"]'))
    write(tmp_path, "b", GOOD.replace('"ro.soc.model" = ["X1*"]', '"ro.hardware" = ["hw"]\n"ro.soc.model" = ["X1*"]'))
    profs = load_profiles(tmp_path)
    assert match_profile({"ro.hardware": "hw", "ro.soc.model": "X1B"}, profs).name == "b"
    assert match_profile({"ro.hardware": "hw"}, profs).name == "a"  # tie -> first by name
    assert profs["b"].affinity({"ro.soc.model": "X1B"}) == ("c0", 2)
    assert profs["b"].affinity({"ro.soc.model": "X1A"}) == ("f0", 4)


# ------------------------------------------------------------------------------------------ listing + selecting


def phones(**kw):
    return {serial: spec for serial, spec in kw.items()}


def test_list_android_devices_reads_props_only_when_usable(profiles):
    adb = FakeAdb({"P8": ("device", PIXEL8, set()), "S24": ("unauthorized", {}, set()),
                   "MT": ("device", DIMENSITY9300, set())})
    devs = list_android_devices(adb, profiles)
    assert [d.serial for d in devs] == ["P8", "S24", "MT"]
    assert [c for c in adb.calls if c[0] != "devices"] == [("P8", "getprop"), ("MT", "getprop")]
    p8 = devs[0]
    assert (p8.model, p8.manufacturer, p8.soc, p8.android_version, p8.sdk, p8.profile.name) == \
        ("Pixel 8", "Google", "Tensor G3", "14", 34, "pixel")
    assert p8.props["ro.hardware"] == "shiba"
    assert devs[1].profile is None and devs[1].props == {} and devs[1].problem.startswith("phone S24 is unauthorized")
    assert devs[2].to_dict() == {"serial": "MT", "state": "device", "model": "24117RK2CG", "manufacturer": "Xiaomi",
                                 "soc": "MT6989", "android_version": "15", "sdk": 35, "profile": "mediatek"}


def test_select_by_profile(profiles):
    adb = FakeAdb(phones(P8=("device", PIXEL8, set()), S24=("device", S24_SNAPDRAGON, set())))
    assert select_device(adb, "pixel", profiles).serial == "P8"
    assert select_device(adb, "snapdragon", profiles).serial == "S24"


def test_select_by_serial_and_unknown_phone(profiles):
    adb = FakeAdb(phones(P8=("device", PIXEL8, set()), MOTO=("device", OLD_PHONE, set())))
    moto = select_device(adb, "MOTO", profiles)
    assert moto.serial == "MOTO" and moto.profile is None and moto.model == "Moto G"


def test_select_no_phones(profiles):
    with pytest.raises(DeviceNotFoundError, match="no Android phone is connected"):
        select_device(FakeAdb({}), "pixel", profiles)


def test_select_profile_matches_none_lists_connected(profiles):
    adb = FakeAdb(phones(S24=("device", S24_SNAPDRAGON, set()), MOTO=("device", OLD_PHONE, set())))
    with pytest.raises(DeviceNotFoundError) as err:
        select_device(adb, "pixel", profiles)
    msg = str(err.value)
    assert "no connected phone matches profile 'pixel'" in msg
    assert "S24 (SM-S921U)" in msg and "MOTO (Moto G)" in msg


def test_select_two_phones_match(profiles):
    adb = FakeAdb(phones(P8=("device", PIXEL8, set()), P6=("device", PIXEL6, set())))
    with pytest.raises(AmbiguousDeviceError) as err:
        select_device(adb, "pixel", profiles)
    msg = str(err.value)
    assert "2 connected phones match profile 'pixel'" in msg and "P8 (Pixel 8)" in msg and "P6 (Pixel 6)" in msg
    assert "--device SERIAL" in msg
    assert select_device(adb, "P6", profiles).model == "Pixel 6"


def test_select_serial_not_connected_or_unknown_name(profiles):
    adb = FakeAdb(phones(P8=("device", PIXEL8, set())))
    for name in ("ZX1G22", "iphone"):
        with pytest.raises(DeviceNotFoundError) as err:
            select_device(adb, name, profiles)
        msg = str(err.value)
        assert f"'{name}' is neither a device profile" in msg
        assert "exynos, generic, mediatek, pixel, snapdragon" in msg and "P8 (Pixel 8)" in msg


@pytest.mark.parametrize("state,fragment", [
    ("unauthorized", "accept the USB debugging (RSA key) prompt"),
    ("offline", "is offline"),
    ("no permissions", "udev"),
    ("recovery", "reboot it to Android"),
    ("bootloader", "bootloader mode"),
])
def test_select_phone_in_bad_state(profiles, state, fragment):
    adb = FakeAdb(phones(BAD1=(state, {}, set())))
    with pytest.raises(DeviceStateError, match=re.escape(fragment)):
        select_device(adb, "BAD1", profiles)
    # By profile: the only phone is not ready, so say why instead of "no phone matches".
    with pytest.raises(DeviceStateError) as err:
        select_device(adb, "pixel", profiles)
    assert "no ready phone matches profile 'pixel'" in str(err.value) and fragment in str(err.value)


def test_select_profile_ignores_bad_phones_when_one_matches(profiles):
    adb = FakeAdb(phones(BAD1=("unauthorized", {}, set()), P8=("device", PIXEL8, set())))
    assert select_device(adb, "pixel", profiles).serial == "P8"


# ------------------------------------------------------------------------------------------ accelerators


def device_for(adb, serial, profiles):
    return select_device(adb, serial, profiles)


def names(accs):
    return [a.name for a in accs]


def test_usable_accelerators_qnn_libs_and_precision(profiles):
    libs = {f"{QNN}/libQnnTFLiteDelegate.so", f"{QNN}/libQnnHtp.so"}
    adb = FakeAdb(phones(S24=("device", S24_SNAPDRAGON, libs)))
    dev = device_for(adb, "S24", profiles)
    assert names(usable_accelerators(adb, dev, "int8")) == ["cpu", "qnn-htp", "gpu", "gpu-fp16", "nnapi"]
    assert names(usable_accelerators(adb, dev, "int16x8")) == ["cpu", "qnn-htp"]
    assert names(usable_accelerators(adb, dev, "fp16")) == ["cpu", "qnn-htp-fp16", "gpu", "gpu-fp16", "nnapi"]
    assert names(usable_accelerators(adb, dev, "int8-io")) == ["cpu", "qnn-htp", "nnapi"]
    assert names(usable_accelerators(adb, dev)) == \
        ["cpu", "qnn-htp", "qnn-htp-fp16", "gpu", "gpu-fp16", "nnapi"]  # no libQnnGpu.so
    # Each device file is checked once per call, through `test -e`.
    adb.calls.clear()
    usable_accelerators(adb, dev)
    checked = [c[3] for c in adb.calls if c[1:3] == ("test", "-e")]
    assert sorted(checked) == sorted(libs | {f"{QNN}/libQnnGpu.so"})


def test_usable_accelerators_without_qnn_libs(profiles):
    adb = FakeAdb(phones(S24=("device", S24_SNAPDRAGON, set())))
    dev = device_for(adb, "S24", profiles)
    assert names(usable_accelerators(adb, dev, "int8")) == ["cpu", "gpu", "gpu-fp16", "nnapi"]


def test_nnapi_dropped_from_android_15(profiles):
    adb = FakeAdb(phones(P6=("device", PIXEL6, set()), P8=("device", PIXEL8, set())))
    assert names(usable_accelerators(adb, device_for(adb, "P6", profiles), "fp32")) == ["cpu", "gpu", "gpu-fp16"]
    assert names(usable_accelerators(adb, device_for(adb, "P8", profiles), "fp32")) == \
        ["cpu", "gpu", "gpu-fp16", "nnapi"]
    assert names(usable_accelerators(adb, device_for(adb, "P8", profiles), "int16x8")) == ["cpu"]


def test_phone_without_profile_gets_cpu_only(profiles):
    adb = FakeAdb(phones(MOTO=("device", OLD_PHONE, set())))
    accs = usable_accelerators(adb, device_for(adb, "MOTO", profiles), "int8")
    assert names(accs) == ["cpu"] and accs[0].flags == ("--use_xnnpack=true",)


# ------------------------------------------------------------------------------------------ through a stub adb


def test_list_and_select_through_a_stub_adb(tmp_path, profiles):
    """The real Adb code path (subprocess, quoting, getprop parsing) against a /bin/sh adb."""
    (tmp_path / "devices.txt").write_text(
        "* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
        "List of devices attached\n"
        "8A1X0ABC               device usb:1-1 product:shiba model:Pixel_8 device:shiba transport_id:3\n"
        "R3CW70ABCDE            unauthorized usb:1-2 transport_id:4\n\n"
    )
    (tmp_path / "props.txt").write_text("".join(f"[{k}]: [{v}]\n" for k, v in PIXEL8.items()))
    adb_path = tmp_path / "adb"
    adb_path.write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = devices ]; then cat '{tmp_path / 'devices.txt'}'; exit 0; fi\n"
        "if [ \"$1\" = -s ] && [ \"$2\" = R3CW70ABCDE ]; then echo 'adb: device unauthorized.' >&2; exit 1; fi\n"
        f"if [ \"$3\" = shell ] && [ \"$4\" = getprop ]; then cat '{tmp_path / 'props.txt'}'; exit 0; fi\n"
        "echo \"/system/bin/sh: $4: inaccessible or not found\" >&2; exit 127\n"
    )
    adb_path.chmod(0o755)
    adb = Adb(adb_path, timeout_s=10)
    devs = list_android_devices(adb, profiles)
    assert [(d.serial, d.state, d.profile.name if d.profile else None) for d in devs] == \
        [("8A1X0ABC", "device", "pixel"), ("R3CW70ABCDE", "unauthorized", None)]
    phone = select_device(adb, "pixel", profiles)
    assert phone.serial == "8A1X0ABC" and phone.profile.affinity(phone.props) == ("1f0", 5)
    with pytest.raises(DeviceStateError, match="R3CW70ABCDE is unauthorized"):
        select_device(adb, "R3CW70ABCDE", profiles)
    assert parse_devices((tmp_path / "devices.txt").read_text())[1].transport_id == "4"
    assert isinstance(phone, AndroidDevice)


def test_phone_vanishing_between_listing_and_getprop(profiles):
    class Flaky(FakeAdb):
        def shell(self, argv, *, timeout_s=None, check=True):
            if self.serial == "GONE":
                raise DeviceNotFoundError("phone GONE is not connected (disconnected?)")
            if self.serial == "OFF":
                raise DeviceStateError("phone OFF is offline")
            return super().shell(argv, timeout_s=timeout_s, check=check)

        def for_device(self, serial):
            return Flaky(self.phones, serial, self.calls)

    adb = Flaky(phones(GONE=("device", PIXEL8, set()), OFF=("device", PIXEL6, set()), P9=("device", PIXEL9, set())))
    devs = list_android_devices(adb, profiles)
    assert [(d.serial, d.state) for d in devs] == [("OFF", "offline"), ("P9", "device")]
    assert select_device(adb, "pixel", profiles).serial == "P9"
