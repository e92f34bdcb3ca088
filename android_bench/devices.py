"""Phones and device profiles: which phone is attached, which cores to pin, which accelerators to try.

A :class:`DeviceProfile` (one ``profiles/<name>.toml``) recognises a family of phones by their system
properties (``ro.soc.model``, ``ro.board.platform``, ``ro.hardware``, ``ro.product.model``; fnmatch
patterns, case-insensitive), names the big cores to pin ``benchmark_model`` to (a hex ``taskset`` mask,
optionally per SoC) and lists the accelerators to try, each as ``benchmark_model`` flags plus the device
files it needs. A phone is chosen on the command line by profile name (``--device pixel``: the one
attached phone that matches it) or by adb serial.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mobileisp.android_bench.adb import (
    Adb,
    AdbDevice,
    AmbiguousDeviceError,
    DeviceNotFoundError,
    DeviceStateError,
    state_problem,
)
from mobileisp.errors import MobileISPError

__all__ = [
    "Accelerator",
    "AndroidDevice",
    "DeviceProfile",
    "PRECISIONS",
    "PROFILE_DIR",
    "ProfileError",
    "list_android_devices",
    "load_profiles",
    "match_profile",
    "select_device",
    "usable_accelerators",
]

#: Where the shipped profiles live (package data).
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
#: The .tflite precisions ``mobileisp export`` writes (an accelerator's ``precisions`` must be among them).
PRECISIONS = ("fp32", "fp16", "int8", "int16x8", "int8-io")
#: Properties that cpu_masks keys are matched against, in this order.
_SOC_KEYS = ("ro.soc.model", "ro.board.platform", "ro.hardware")


class ProfileError(MobileISPError):
    """A device profile file that is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Accelerator:
    """One way of running a model on a phone with ``benchmark_model``.

    Attributes:
        name: ``cpu`` (XNNPACK), ``gpu`` (GPU delegate, fp32 compute), ``gpu-fp16``, ``nnapi``, ``qnn-htp``,
            ``qnn-htp-fp16``, ``qnn-gpu``, ...
        flags: benchmark_model flags that select it, e.g. ``("--use_gpu=true",
            "--gpu_precision_loss_allowed=false")``.
        requires: device files that must exist (e.g. the QNN libraries), checked with ``test -e``.
        env: environment for the run, ``(("LD_LIBRARY_PATH", "/data/local/tmp/qnn"), ...)``.
        precisions: artefact precisions it suits; empty means all.
        max_sdk: highest Android API level to use it on (NNAPI: 34; deprecated in Android 15).
        notes: free text for reports.
    """

    name: str
    flags: tuple[str, ...]
    requires: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    precisions: tuple[str, ...] = ()
    max_sdk: int | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "flags": list(self.flags), "requires": list(self.requires),
            "env": {k: v for k, v in self.env}, "precisions": list(self.precisions),
            "max_sdk": self.max_sdk, "notes": self.notes,
        }


@dataclass(frozen=True)
class DeviceProfile:
    """A family of phones (one ``profiles/<name>.toml``).

    Attributes:
        name: the profile name used with ``--device`` (the file's stem).
        title: human-readable description.
        match: getprop key -> fnmatch patterns (case-insensitive). A phone matches when ANY key's value
            matches one of its patterns; an empty table never matches (``generic``).
        cpu_mask: hex ``taskset`` mask of the big cores (no ``0x``), e.g. ``"f0"`` = cpu4-7.
        threads: number of cores in ``cpu_mask`` (the ``--num_threads`` default).
        cpu_masks: per-SoC override: fnmatch pattern (tried against ro.soc.model, ro.board.platform,
            ro.hardware) -> (mask, threads).
        accelerators: in the order to try; ``cpu`` first.
        fixed_performance: the phones offer ``cmd power set-fixed-performance-mode-enabled`` (Android 11+).
        cooldown_status: wait until ``dumpsys thermalservice`` Thermal Status <= this before each run.
    """

    name: str
    title: str
    match: dict[str, tuple[str, ...]]
    cpu_mask: str
    threads: int
    cpu_masks: dict[str, tuple[str, int]] = field(default_factory=dict)
    accelerators: tuple[Accelerator, ...] = ()
    fixed_performance: bool = True
    cooldown_status: int = 0

    def matches(self, props: Mapping[str, str]) -> int:
        """How many of the ``match`` keys the phone's properties satisfy (0: not this profile)."""
        hits = 0
        for key, patterns in self.match.items():
            value = props.get(key)
            if value and _fnmatch_any(value, patterns):
                hits += 1
        return hits

    def affinity(self, props: Mapping[str, str]) -> tuple[str, int]:
        """The (taskset hex mask, thread count) for a phone with these properties."""
        for key in _SOC_KEYS:
            value = props.get(key)
            if not value:
                continue
            for pattern, (mask, threads) in self.cpu_masks.items():
                if _fnmatch_any(value, (pattern,)):
                    return mask, threads
        return self.cpu_mask, self.threads

    def accelerator(self, name: str) -> Accelerator | None:
        return next((a for a in self.accelerators if a.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title,
            "match": {k: list(v) for k, v in self.match.items()},
            "cpu_mask": self.cpu_mask, "threads": self.threads,
            "cpu_masks": {k: {"mask": m, "threads": t} for k, (m, t) in self.cpu_masks.items()},
            "accelerators": [a.to_dict() for a in self.accelerators],
            "fixed_performance": self.fixed_performance, "cooldown_status": self.cooldown_status,
        }


def _fnmatch_any(value: str, patterns: tuple[str, ...] | list[str]) -> bool:
    v = value.strip().lower()
    return any(fnmatch.fnmatchcase(v, p.lower()) for p in patterns)


# ---------------------------------------------------------------------------------------------------
# Loading


def _bad(path: Path, key: str, what: str) -> ProfileError:
    return ProfileError(f"device profile {path}: {key}: {what}")


def _str(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(path, key, f"must be a non-empty string, got {value!r}")
    return value


def _str_list(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(path, key, f"must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _mask(path: Path, key: str, mask: Any, threads: Any) -> tuple[str, int]:
    if not isinstance(mask, str):
        raise _bad(path, key, f"cpu mask must be a hex string such as \"f0\", got {mask!r}")
    text = mask.lower().removeprefix("0x")
    try:
        bits = int(text, 16)
    except ValueError:
        raise _bad(path, key, f"cpu mask {mask!r} is not hexadecimal") from None
    if bits <= 0:
        raise _bad(path, key, f"cpu mask {mask!r} selects no core")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise _bad(path, key, f"threads must be a positive integer, got {threads!r}")
    if threads != bin(bits).count("1"):
        raise _bad(path, key, f"threads = {threads} but mask {mask!r} selects {bin(bits).count('1')} cores")
    return format(bits, "x"), threads


def _check_keys(path: Path, where: str, table: dict, allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _bad(path, f"{where}{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(table))
    if missing:
        raise _bad(path, f"{where}{missing[0]}", "missing")


_TOP_KEYS = {"name", "title", "match", "cpu_mask", "threads", "cpu_masks", "accelerators",
             "fixed_performance", "cooldown_status"}
_ACC_KEYS = {"name", "flags", "requires", "env", "precisions", "max_sdk", "notes"}


def _accelerator(path: Path, i: int, table: Any) -> Accelerator:
    where = f"accelerators[{i}]."
    if not isinstance(table, dict):
        raise _bad(path, f"accelerators[{i}]", "must be a table ([[accelerators]])")
    _check_keys(path, where, table, _ACC_KEYS, {"name", "flags"})
    name = _str(path, where + "name", table["name"])
    flags = _str_list(path, where + "flags", table["flags"]) if table["flags"] else ()
    for flag in flags:
        if not flag.startswith("--"):
            raise _bad(path, where + "flags", f"{flag!r} is not a benchmark_model flag (--name=value)")
    requires = _str_list(path, where + "requires", table.get("requires", [])) if table.get("requires") else ()
    for req in requires:
        if not req.startswith("/"):
            raise _bad(path, where + "requires", f"{req!r} must be an absolute device path")
    env_table = table.get("env", {})
    if not isinstance(env_table, dict) or not all(isinstance(v, str) for v in env_table.values()):
        raise _bad(path, where + "env", "must be a table of string values")
    for k in env_table:
        if not k.replace("_", "a").isalnum() or k[0].isdigit():
            raise _bad(path, where + "env", f"{k!r} is not a valid environment variable name")
    precisions = _str_list(path, where + "precisions", table["precisions"]) if table.get("precisions") else ()
    for p in precisions:
        if p not in PRECISIONS:
            raise _bad(path, where + "precisions", f"unknown precision {p!r} (known: {', '.join(PRECISIONS)})")
    max_sdk = table.get("max_sdk")
    if max_sdk is not None and (not isinstance(max_sdk, int) or isinstance(max_sdk, bool) or max_sdk < 1):
        raise _bad(path, where + "max_sdk", f"must be a positive integer, got {max_sdk!r}")
    notes = table.get("notes", "")
    if not isinstance(notes, str):
        raise _bad(path, where + "notes", "must be a string")
    return Accelerator(name, flags, requires, tuple(env_table.items()), precisions, max_sdk, " ".join(notes.split()))


def load_profile(path: str | os.PathLike) -> DeviceProfile:
    """Read and validate one profile file.

    Raises:
        ProfileError: unreadable TOML, unknown/missing key, wrong type, a mask whose core count differs
            from ``threads``, duplicate accelerator, ``cpu`` not first; the message names file and key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"device profile {path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"device profile {path}: not valid TOML ({exc})") from None
    _check_keys(path, "", data, _TOP_KEYS, {"title", "match", "cpu_mask", "threads", "accelerators"})
    name = data.get("name", path.stem)
    if name != path.stem:
        raise _bad(path, "name", f"{name!r} must equal the file name {path.stem!r}")
    title = _str(path, "title", data["title"])
    if not isinstance(data["match"], dict):
        raise _bad(path, "match", "must be a table of getprop key = [patterns]")
    match = {k: _str_list(path, f"match.{k}", v) for k, v in data["match"].items()}
    cpu_mask, threads = _mask(path, "cpu_mask", data["cpu_mask"], data["threads"])
    cpu_masks: dict[str, tuple[str, int]] = {}
    masks_table = data.get("cpu_masks", {})
    if not isinstance(masks_table, dict):
        raise _bad(path, "cpu_masks", "must be a table of SoC = {mask = \"..\", threads = N}")
    for soc, entry in masks_table.items():
        if not isinstance(entry, dict):
            raise _bad(path, f"cpu_masks.{soc}", "must be {mask = \"..\", threads = N}")
        _check_keys(path, f"cpu_masks.{soc}.", entry, {"mask", "threads"}, {"mask", "threads"})
        cpu_masks[soc] = _mask(path, f"cpu_masks.{soc}", entry["mask"], entry["threads"])
    accs_raw = data["accelerators"]
    if not isinstance(accs_raw, list) or not accs_raw:
        raise _bad(path, "accelerators", "must be a non-empty array of tables ([[accelerators]])")
    accelerators = tuple(_accelerator(path, i, t) for i, t in enumerate(accs_raw))
    names = [a.name for a in accelerators]
    if names[0] != "cpu":
        raise _bad(path, "accelerators[0].name", f"the first accelerator must be 'cpu', got {names[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _bad(path, "accelerators", f"duplicate accelerator {dupes[0]!r}")
    fixed = data.get("fixed_performance", True)
    if not isinstance(fixed, bool):
        raise _bad(path, "fixed_performance", f"must be true or false, got {fixed!r}")
    cooldown = data.get("cooldown_status", 0)
    if not isinstance(cooldown, int) or isinstance(cooldown, bool) or not 0 <= cooldown <= 6:
        raise _bad(path, "cooldown_status", f"must be an integer 0..6 (NONE..SHUTDOWN), got {cooldown!r}")
    return DeviceProfile(name, title, match, cpu_mask, threads, cpu_masks, accelerators, fixed, cooldown)


def load_profiles(folder: Path | str | None = None) -> dict[str, DeviceProfile]:
    """Every ``*.toml`` profile in ``folder`` (default: the shipped ``android_bench/profiles``), by name.

    Raises:
        ProfileError: the folder is missing or holds no profile, or a file is malformed.
    """
    folder = PROFILE_DIR if folder is None else Path(folder)
    if not folder.is_dir():
        raise ProfileError(f"device profile folder {folder} does not exist")
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise ProfileError(f"device profile folder {folder} holds no *.toml profile")
    return {p.stem: load_profile(p) for p in files}


def match_profile(props: Mapping[str, str], profiles: Mapping[str, DeviceProfile]) -> DeviceProfile | None:
    """The profile that recognises a phone with these properties, or None.

    The profile with the most matching keys wins; ties go to the first by name.
    """
    best, best_hits = None, 0
    for name in sorted(profiles):
        hits = profiles[name].matches(props)
        if hits > best_hits:
            best, best_hits = profiles[name], hits
    return best


# ---------------------------------------------------------------------------------------------------
# Phones


@dataclass
class AndroidDevice:
    """An attached phone, with what its system properties say about it.

    Attributes:
        serial, state: from ``adb devices -l`` (state ``device`` means usable).
        model, manufacturer: ``ro.product.model`` / ``ro.product.manufacturer`` (model falls back to adb's
            ``model:`` field with ``_`` -> space when the phone cannot be queried).
        soc: ``ro.soc.model`` (Android 12+), else ``ro.board.platform``, else ``ro.hardware``.
        android_version: ``ro.build.version.release``; sdk: ``ro.build.version.sdk`` as int.
        profile: the matching :class:`DeviceProfile` or None.
        props: every system property (empty unless the state is ``device``).
    """

    serial: str
    state: str
    model: str | None = None
    manufacturer: str | None = None
    soc: str | None = None
    android_version: str | None = None
    sdk: int | None = None
    profile: DeviceProfile | None = None
    props: dict[str, str] = field(default_factory=dict)

    @property
    def problem(self) -> str | None:
        """Why this phone cannot be used (one line), or None."""
        return state_problem(self.serial, self.state)

    def describe(self) -> str:
        """``SERIAL (Pixel 8)``, ``SERIAL (unauthorized)``."""
        extra = self.model if self.state == "device" and self.model else self.state
        if self.state != "device" and self.model:
            extra = f"{self.model}, {self.state}"
        return f"{self.serial} ({extra})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial, "state": self.state, "model": self.model,
            "manufacturer": self.manufacturer, "soc": self.soc, "android_version": self.android_version,
            "sdk": self.sdk, "profile": self.profile.name if self.profile else None,
        }


def _from_props(entry: AdbDevice, props: dict[str, str], profiles: Mapping[str, DeviceProfile]) -> AndroidDevice:
    def get(*keys: str) -> str | None:
        for k in keys:
            v = props.get(k, "").strip()
            if v:
                return v
        return None

    sdk_text = get("ro.build.version.sdk")
    return AndroidDevice(
        serial=entry.serial, state=entry.state,
        model=get("ro.product.model") or _adb_model(entry),
        manufacturer=get("ro.product.manufacturer"),
        soc=get(*_SOC_KEYS),
        android_version=get("ro.build.version.release"),
        sdk=int(sdk_text) if sdk_text and sdk_text.isdigit() else None,
        profile=match_profile(props, profiles) if props else None,
        props=props,
    )


def _adb_model(entry: AdbDevice) -> str | None:
    return entry.model.replace("_", " ") if entry.model else None


def list_android_devices(adb: Adb, profiles: Mapping[str, DeviceProfile] | None = None) -> list[AndroidDevice]:
    """Every phone ``adb devices -l`` lists, in any state; properties are read only from usable ones.

    A phone that disappears or turns offline between the listing and ``getprop`` is kept with state
    ``offline`` (or dropped when it is gone).
    """
    profiles = load_profiles() if profiles is None else profiles
    out = []
    for entry in adb.devices():
        props: dict[str, str] = {}
        if entry.state == "device":
            try:
                props = adb.for_device(entry.serial).getprops()
            except DeviceNotFoundError:
                continue
            except DeviceStateError:
                entry = AdbDevice(entry.serial, "offline", entry.model, entry.product, entry.device,
                                  entry.transport_id, entry.usb)
        out.append(_from_props(entry, props, profiles))
    return out


def select_device(adb: Adb, device: str, profiles: Mapping[str, DeviceProfile] | None = None) -> AndroidDevice:
    """The phone named by ``device``: a profile name (the one attached phone matching it) or a serial.

    Raises:
        DeviceNotFoundError: no phone at all; no phone matches the profile; the serial is not attached;
            an unknown name (neither a profile nor an attached serial).
        AmbiguousDeviceError: several phones match the profile.
        DeviceStateError: the phone (or the only candidate) is offline/unauthorized/...
    """
    profiles = load_profiles() if profiles is None else profiles
    device = str(device).strip()
    phones = list_android_devices(adb, profiles)
    if not phones:
        raise DeviceNotFoundError(
            "no Android phone is connected (adb devices lists none): plug one in with USB debugging enabled"
        )
    connected = ", ".join(p.describe() for p in phones)
    by_serial = {p.serial: p for p in phones}
    if device in by_serial:  # a serial wins over a profile of the same name
        phone = by_serial[device]
        if phone.problem:
            raise DeviceStateError(phone.problem)
        return phone
    if device in profiles:
        profile = profiles[device]
        hits = [p for p in phones if p.state == "device" and p.profile is not None and p.profile.name == device]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise AmbiguousDeviceError(
                f"{len(hits)} connected phones match profile {device!r} ("
                + ", ".join(p.describe() for p in hits) + "): choose one with --device SERIAL"
            )
        not_ready = [p for p in phones if p.problem]
        if not_ready:
            raise DeviceStateError(
                f"no ready phone matches profile {device!r} ({profile.title}); "
                + "; ".join(p.problem for p in not_ready) + f"; connected: {connected}"
            )
        raise DeviceNotFoundError(
            f"no connected phone matches profile {device!r} ({profile.title}); connected: {connected}"
        )
    raise DeviceNotFoundError(
        f"{device!r} is neither a device profile ({', '.join(sorted(profiles))}) nor the serial of a "
        f"connected phone (connected: {connected})"
    )


def usable_accelerators(adb: Adb, device: AndroidDevice, precision: str | None = None) -> list[Accelerator]:
    """The profile's accelerators this phone can run for an artefact of ``precision``, in profile order.

    Drops an accelerator whose ``max_sdk`` is below the phone's API level, whose ``precisions`` exclude
    ``precision``, or whose ``requires`` files are missing on the phone (checked with ``test -e``).
    A phone without a profile gets the plain CPU (XNNPACK) path.
    """
    if device.profile is None:
        return [Accelerator("cpu", ("--use_xnnpack=true",), notes="XNNPACK (no device profile)")]
    phone = adb if adb.serial == device.serial else adb.for_device(device.serial)
    seen: dict[str, bool] = {}
    out = []
    for acc in device.profile.accelerators:
        if acc.max_sdk is not None and device.sdk is not None and device.sdk > acc.max_sdk:
            continue
        if precision is not None and acc.precisions and precision not in acc.precisions:
            continue
        ok = True
        for path in acc.requires:
            if path not in seen:
                seen[path] = phone.exists(path)
            if not seen[path]:
                ok = False
                break
        if ok:
            out.append(acc)
    return out
