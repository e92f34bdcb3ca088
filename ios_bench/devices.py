"""Apple devices a benchmark can run on: listing (devicectl, xctrace) and picking one.

``xcrun devicectl list devices --json-output FILE`` (Xcode 15+) is the primary source: it names each
phone's hardware UDID (what ``xcodebuild -destination id=`` takes), marketing name, iOS version and
connection state. ``xcrun xctrace list devices`` is the fallback for older Xcodes. Both outputs are
parsed by pure functions that the tests feed with recorded outputs.

A device is a dict with the keys: ``name``, ``udid``, ``identifier`` (CoreDevice id or None), ``model``
(marketing name), ``product_type`` (``iPhone16,1``), ``soc``, ``platform`` (``iOS``, ``macOS``, ...),
``os_version``, ``kind`` (``device``, ``simulator`` or ``mac``), ``state`` (``connected``, ``available``,
``offline``, ``unpaired``), ``developer_mode`` (``enabled``/``disabled``/None), ``transport``, ``source``
and ``device_arg`` (what to pass to ``mobileisp bench --device``, or None if it cannot be benchmarked).
"""

from __future__ import annotations

import json
import platform
import re
import tempfile
from pathlib import Path
from typing import Any

from mobileisp.ios_bench.platform import AppleBenchError, require_xcode, run_tool

#: iPhone model identifier -> system on chip (Apple's published specifications).
IPHONE_SOCS: dict[str, str] = {
    **dict.fromkeys(("iPhone13,1", "iPhone13,2", "iPhone13,3", "iPhone13,4"), "Apple A14 Bionic"),
    **dict.fromkeys(("iPhone14,2", "iPhone14,3", "iPhone14,4", "iPhone14,5", "iPhone14,6", "iPhone14,7", "iPhone14,8"), "Apple A15 Bionic"),
    **dict.fromkeys(("iPhone15,2", "iPhone15,3", "iPhone15,4", "iPhone15,5"), "Apple A16 Bionic"),
    **dict.fromkeys(("iPhone16,1", "iPhone16,2"), "Apple A17 Pro"),
    **dict.fromkeys(("iPhone17,3", "iPhone17,4", "iPhone17,5"), "Apple A18"),
    **dict.fromkeys(("iPhone17,1", "iPhone17,2"), "Apple A18 Pro"),
}

_USABLE = ("connected", "available")
# "<name> (<os version>) (<udid>)"; the host Mac has no version; names may hold parentheses themselves.
_XCTRACE_LINE = re.compile(r"^(?P<name>.+?)(?: \((?P<version>\d+(?:\.\d+)*)\))? \((?P<udid>[0-9A-Fa-f-]{8,})\)$")


def devicectl_list_command(json_path: str | Path) -> list[str]:
    """``xcrun devicectl list devices`` writing its JSON report to ``json_path``."""
    return ["xcrun", "devicectl", "list", "devices", "--timeout", "10", "--json-output", str(json_path)]


def xctrace_list_command() -> list[str]:
    """``xcrun xctrace list devices`` (text listing: devices, offline devices, simulators)."""
    return ["xcrun", "xctrace", "list", "devices"]


def _device(**kw: Any) -> dict[str, Any]:
    keys = ("name", "udid", "identifier", "model", "product_type", "soc", "platform", "os_version", "kind",
            "state", "developer_mode", "transport", "source", "device_arg")
    d = {k: kw.get(k) for k in keys}
    if d["device_arg"] is None and d["kind"] == "device" and d["platform"] in ("iOS", "iPadOS", None) and d["udid"]:
        d["device_arg"] = f"iphone:{d['udid']}"
    return d


def parse_devicectl_devices(text: str) -> list[dict[str, Any]]:
    """Devices from the JSON that ``devicectl list devices --json-output`` writes.

    State: ``unpaired`` if the Mac is not trusted yet; ``connected`` when the CoreDevice tunnel is up;
    ``available`` when reachable over cable or network (Xcode opens the tunnel on demand); else ``offline``.

    Raises:
        AppleBenchError: not JSON, or not a devicectl device report.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AppleBenchError(f"devicectl wrote no JSON device list ({e.msg} at line {e.lineno})") from None
    info = data.get("info", {}) if isinstance(data, dict) else {}
    if isinstance(info, dict) and info.get("outcome") not in (None, "success"):
        raise AppleBenchError(f"devicectl list devices failed: {_devicectl_error(data)}")
    devices = data.get("result", {}).get("devices") if isinstance(data, dict) and isinstance(data.get("result"), dict) else None
    if not isinstance(devices, list):
        raise AppleBenchError("devicectl JSON has no result.devices list")
    out = []
    for d in devices:
        hw = d.get("hardwareProperties") or {}
        props = d.get("deviceProperties") or {}
        conn = d.get("connectionProperties") or {}
        pairing, tunnel, transport = conn.get("pairingState"), conn.get("tunnelState"), conn.get("transportType")
        if pairing is not None and pairing != "paired":
            state = "unpaired"
        elif tunnel == "connected":
            state = "connected"
        elif transport and tunnel != "unavailable":
            state = "available"
        else:
            state = "offline"
        product = hw.get("productType")
        out.append(_device(
            name=props.get("name"), udid=hw.get("udid"), identifier=d.get("identifier"),
            model=hw.get("marketingName"), product_type=product, soc=IPHONE_SOCS.get(product),
            platform=hw.get("platform"), os_version=props.get("osVersionNumber"), kind="device", state=state,
            developer_mode=props.get("developerModeStatus"), transport=transport, source="devicectl",
        ))
    return out


def _devicectl_error(data: dict) -> str:
    err = data.get("error", {}) if isinstance(data, dict) else {}
    desc = err.get("userInfo", {}).get("NSLocalizedDescription", {}) if isinstance(err, dict) else {}
    return (desc.get("string") if isinstance(desc, dict) else None) or "unknown error"


def parse_xctrace_devices(text: str) -> list[dict[str, Any]]:
    """Devices from ``xctrace list devices``: ``== Devices ==``, ``== Devices Offline ==``, ``== Simulators ==``.

    In the device sections a line without an OS version is the host Mac. Lines that do not match the
    ``name (version) (udid)`` shape are skipped.
    """
    out, section = [], None
    for raw in text.splitlines():
        line = raw.replace("\u00a0", " ").strip()
        if line.startswith("==") and line.endswith("=="):
            title = line.strip("= ").lower()
            section = {"devices": "online", "devices offline": "offline", "simulators": "simulator"}.get(title)
            continue
        m = _XCTRACE_LINE.match(line)
        if not line or section is None or not m:
            continue
        name, version, udid = m.group("name").strip(), m.group("version"), m.group("udid")
        if section == "simulator":
            out.append(_device(name=name, udid=udid, os_version=version, kind="simulator", state="available", source="xctrace"))
        elif version is None:
            out.append(_device(name=name, udid=udid, platform="macOS", kind="mac", source="xctrace",
                               state="available" if section == "online" else "offline", device_arg="mac"))
        else:
            out.append(_device(name=name, udid=udid, os_version=version, kind="device", source="xctrace",
                               state="available" if section == "online" else "offline"))
    return out


def this_mac() -> dict[str, Any]:
    """The host Mac as a device entry (``--device mac``)."""
    version = platform.mac_ver()[0] or None
    return _device(name=platform.node() or "this Mac", platform="macOS", os_version=version, kind="mac",
                   state="available", source="host", device_arg="mac")


def list_apple_devices() -> list[dict[str, Any]]:
    """The host Mac followed by the Apple devices Xcode can see (physical devices, and simulators when
    the listing comes from xctrace).

    Raises:
        PlatformError: not macOS with Xcode (checked before anything runs).
        AppleBenchError: neither devicectl nor xctrace produced a listing.
    """
    require_xcode("mobileisp devices --apple")
    devices = _devicectl_devices()
    if devices is None:
        done = run_tool(xctrace_list_command(), timeout_s=60)
        if done.returncode != 0:
            raise AppleBenchError(f"xcrun xctrace list devices failed: {_last_line(done.stderr or done.stdout)}")
        devices = parse_xctrace_devices(done.stdout + "\n" + done.stderr)
    if not any(d["kind"] == "mac" for d in devices):
        devices.insert(0, this_mac())
    return devices


def _devicectl_devices() -> list[dict[str, Any]] | None:
    """devicectl's listing, or None when devicectl is missing (Xcode < 15) or failed."""
    with tempfile.TemporaryDirectory(prefix="mobileisp-devicectl-") as tmp:
        json_path = Path(tmp) / "devices.json"
        try:
            done = run_tool(devicectl_list_command(json_path), timeout_s=60)
        except AppleBenchError:
            return None
        if done.returncode != 0 or not json_path.is_file():
            return None
        try:
            return parse_devicectl_devices(json_path.read_text(encoding="utf-8", errors="replace"))
        except AppleBenchError:
            return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def select_iphone(devices: list[dict[str, Any]], udid: str | None = None) -> dict[str, Any]:
    """Pick the physical iOS device to benchmark on.

    Args:
        devices: entries from :func:`list_apple_devices`.
        udid: the hardware UDID (or CoreDevice identifier) from ``--device iphone:UDID``; None picks the
            only usable one.

    Raises:
        AppleBenchError: no such device, a simulator, not usable (offline, untrusted, Developer Mode
            off), or several candidates without a UDID.
    """
    phones = [d for d in devices if d["kind"] == "device" and d["platform"] in ("iOS", "iPadOS", None)]
    if udid is not None:
        match = [d for d in devices if udid in (d["udid"], d["identifier"])]
        if not match:
            raise AppleBenchError(f"no Apple device with UDID {udid} is visible to Xcode; `mobileisp devices --apple` lists them")
        d = match[0]
        if d["kind"] == "simulator":
            raise AppleBenchError(f"{d['name']} ({udid}) is a simulator; benchmarks need a physical iPhone")
        if d not in phones:
            raise AppleBenchError(f"{d['name']} ({udid}) is not an iOS device")
        _check_usable(d)
        return d
    usable = [d for d in phones if d["state"] in _USABLE]
    if not usable:
        if phones:
            _check_usable(phones[0])
        raise AppleBenchError("no iPhone is connected; connect one by cable, unlock it and trust this Mac")
    if len(usable) > 1:
        listed = ", ".join(f"{d['name']} ({d['udid']})" for d in usable)
        raise AppleBenchError(f"{len(usable)} iOS devices are connected: {listed}; pick one with --device iphone:UDID")
    _check_usable(usable[0])
    return usable[0]


def _check_usable(d: dict[str, Any]) -> None:
    label = f"{d['name']} ({d['udid']})"
    if d["state"] == "unpaired":
        raise AppleBenchError(f"{label} does not trust this Mac yet; unlock it and accept the Trust prompt")
    if d["state"] not in _USABLE:
        raise AppleBenchError(f"{label} is offline; connect it by cable, unlock it and retry")
    if d["developer_mode"] == "disabled":
        raise AppleBenchError(f"{label} has Developer Mode off; enable it in Settings > Privacy & Security > Developer Mode")

