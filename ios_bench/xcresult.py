"""Reading an iPhone benchmark back out of Xcode's result bundle (``.xcresult``, Xcode 16+).

The XCTest in ``MobileISPBench`` attaches its measurements as a JSON attachment named
``mobileisp-bench-result``. After ``xcodebuild test``:

1. ``xcrun xcresulttool get test-results summary --path B.xcresult --compact`` says whether the test
   passed, on which device, and why it failed (:func:`parse_test_summary`);
2. ``xcrun xcresulttool export attachments --path B.xcresult --output-path DIR`` writes every attachment
   plus ``manifest.json`` (:func:`find_result_attachment`);
3. the attachment is the test's JSON (:func:`parse_device_result`), turned into a
   :class:`~mobileisp.bench.BenchResult` by :func:`device_result_to_bench`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from mobileisp.bench import BenchResult, BenchResultError
from mobileisp.ios_bench.artefact import artefact_identity, check_compute_units
from mobileisp.ios_bench.devices import IPHONE_SOCS
from mobileisp.ios_bench.platform import AppleBenchError

#: Name the Swift test gives its JSON attachment (XCTest appends ``_<n>_<UUID>.json`` when exporting).
RESULT_ATTACHMENT = "mobileisp-bench-result"
#: Schema tag written by the Swift test; bump both sides together.
RESULT_SCHEMA = "mobileisp.ios_bench.result/1"


def summary_command(bundle: str | Path) -> list[str]:
    """``xcresulttool`` command printing the test summary of ``bundle`` as JSON."""
    return ["xcrun", "xcresulttool", "get", "test-results", "summary", "--path", str(bundle), "--compact"]


def export_attachments_command(bundle: str | Path, out_dir: str | Path) -> list[str]:
    """``xcresulttool`` command exporting the attachments of ``bundle`` (and manifest.json) to ``out_dir``."""
    return ["xcrun", "xcresulttool", "export", "attachments", "--path", str(bundle), "--output-path", str(out_dir)]


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AppleBenchError(f"{what} is not JSON ({e.msg} at line {e.lineno})") from None


def parse_test_summary(text: str) -> dict[str, Any]:
    """The parts of ``get test-results summary`` that matter here.

    Returns:
        ``{"result": "Passed"|"Failed"|..., "passed": int, "failed": int, "failures": [str, ...],
        "device": {"name", "model", "os_version", "platform", "id"} or None}``.
    """
    data = _load_json(text, "xcresulttool test summary")
    if not isinstance(data, dict) or "result" not in data:
        raise AppleBenchError("xcresulttool test summary has no result field")
    failures = [
        f"{f.get('testName', '?')}: {f.get('failureText', '').strip()}"
        for f in data.get("testFailures", []) if isinstance(f, dict)
    ]
    device = None
    for conf in data.get("devicesAndConfigurations", []) or []:
        dev = conf.get("device") if isinstance(conf, dict) else None
        if isinstance(dev, dict):
            device = {
                "name": dev.get("deviceName"), "model": dev.get("modelName"), "os_version": dev.get("osVersion"),
                "platform": dev.get("platform"), "id": dev.get("deviceId"),
            }
            break
    return {
        "result": data["result"], "passed": int(data.get("passedTests", 0)), "failed": int(data.get("failedTests", 0)),
        "failures": failures, "device": device,
    }


def find_result_attachment(export_dir: str | Path) -> Path:
    """Path of the exported ``mobileisp-bench-result`` attachment, found through ``manifest.json``.

    Raises:
        AppleBenchError: no manifest, or no such attachment (the test did not get as far as writing it).
    """
    export_dir = Path(export_dir)
    manifest = export_dir / "manifest.json"
    if not manifest.is_file():
        raise AppleBenchError(f"xcresulttool exported no manifest.json into {export_dir}")
    entries = _load_json(manifest.read_text(encoding="utf-8"), str(manifest))
    for test in entries if isinstance(entries, list) else []:
        for att in test.get("attachments", []) if isinstance(test, dict) else []:
            name = str(att.get("suggestedHumanReadableName", ""))
            exported = att.get("exportedFileName")
            if name.startswith(RESULT_ATTACHMENT) and exported:
                path = export_dir / Path(str(exported)).name  # never follow a path out of export_dir
                if path.is_file():
                    return path
    raise AppleBenchError(f"the test result bundle holds no {RESULT_ATTACHMENT} attachment (see {manifest})")


def _positive_times(values: Any, key: str) -> list[float]:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise AppleBenchError(f"device result: {key} must be numbers")
    times = [float(v) for v in values]
    if any(not math.isfinite(v) or v < 0 for v in times):
        raise AppleBenchError(f"device result: {key} holds a negative or non-finite time")
    return times


def parse_device_result(text: str) -> dict[str, Any]:
    """Validate the JSON written by the Swift test and return it as a dict.

    Required keys: ``schema``, ``device`` (model identifier, ``iPhone16,1``), ``os_version``,
    ``compute_units``, ``warmup``, ``runs``, ``runs_ms`` (``runs`` numbers, ms per prediction),
    ``compile_ms``, ``load_ms``, ``inputs`` (``[{"name", "shape", "dtype"}]``). Optional: ``warmup_ms``,
    ``outputs``, ``metadata`` (the model's user-defined metadata), ``model_file``, ``started_at``.

    Raises:
        AppleBenchError: not JSON, another schema, a missing key, or inconsistent run counts.
    """
    data = _load_json(text, "device result")
    if not isinstance(data, dict):
        raise AppleBenchError("device result is not a JSON object")
    if data.get("schema") != RESULT_SCHEMA:
        raise AppleBenchError(f"device result has schema {data.get('schema')!r}, expected {RESULT_SCHEMA!r}")
    required = ("device", "os_version", "compute_units", "warmup", "runs", "runs_ms", "compile_ms", "load_ms", "inputs")
    missing = [k for k in required if k not in data]
    if missing:
        raise AppleBenchError(f"device result lacks {', '.join(missing)}")
    for key in ("warmup", "runs"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
            raise AppleBenchError(f"device result: {key} must be a non-negative integer")
    for key in ("compile_ms", "load_ms"):
        _positive_times([data[key]], key)
    data["runs_ms"] = _positive_times(data["runs_ms"], "runs_ms")
    data["warmup_ms"] = _positive_times(data.get("warmup_ms", []), "warmup_ms")
    if len(data["runs_ms"]) != data["runs"] or len(data["runs_ms"]) == 0:
        raise AppleBenchError(f"device result has {len(data['runs_ms'])} run times for runs = {data['runs']}")
    if data["warmup_ms"] and len(data["warmup_ms"]) != data["warmup"]:
        raise AppleBenchError(f"device result has {len(data['warmup_ms'])} warm-up times for warmup = {data['warmup']}")
    data["compute_units"] = check_compute_units(data["compute_units"])
    inputs = data["inputs"]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) and "shape" in i for i in inputs):
        raise AppleBenchError("device result: inputs must be a non-empty list of {name, shape, dtype}")
    return data


def device_result_to_bench(data: Mapping[str, Any], artefact: str | Path, device: Mapping[str, Any] | None = None) -> BenchResult:
    """One :class:`BenchResult` from a parsed device result.

    Args:
        data: output of :func:`parse_device_result`.
        artefact: the benchmarked model (its name gives model and precision when metadata does not).
        device: the device entry from :mod:`mobileisp.ios_bench.devices` (marketing name, UDID), if known.
    """
    device = dict(device or {})
    model, precision = artefact_identity(artefact, data.get("metadata"))
    machine = str(data["device"])
    name = device.get("model") or device.get("name") or machine
    raw = next((i for i in data["inputs"] if i.get("name") == "raw"), data["inputs"][0])
    first = data["warmup_ms"][0] if data["warmup_ms"] else None
    notes = [f"compile {float(data['compile_ms']):.1f} ms", f"load {float(data['load_ms']):.1f} ms"]
    if first is not None:
        notes.append(f"first prediction {first:.1f} ms")
    notes.append(f"{machine}" + (f" udid {device['udid']}" if device.get("udid") else ""))
    try:
        return BenchResult.from_samples(
            data["runs_ms"], warmup=int(data["warmup"]), artefact=str(artefact), model=model, format="coreml",
            precision=precision, runtime="coreml", device=name, soc=device.get("soc") or IPHONE_SOCS.get(machine),
            os_version=f"iOS {data['os_version']}", accelerator=data["compute_units"],
            input_shape=tuple(int(d) for d in raw["shape"]), load_ms=float(data["compile_ms"]) + float(data["load_ms"]),
            notes="; ".join(notes),
        )
    except BenchResultError as e:
        raise AppleBenchError(f"device result is inconsistent: {e}") from None
