"""Benchmark report: JSON collection, Markdown table and a latency-vs-PSNR plot.

Every bench runner returns :class:`mobileisp.bench.BenchResult` rows; this stage gathers rows from any
runner (host, Android, Mac, iPhone) into one report folder::

    bench.json   {"mobileisp_version": ..., "results": [BenchResult.to_dict(), ...]}
    bench.md     a Markdown table, one row per result
    bench.png    median latency (ms, log axis) against parity PSNR (dB), one point per result

JSON is the only input format (no pickle). Files are written atomically and never overwritten without
``force``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from mobileisp import __version__
from mobileisp._io import atomic_path, atomic_write_json, atomic_write_text, check_writable
from mobileisp.bench import BenchResult, BenchResultError

#: (header, cell function) of each Markdown column.
_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("model", lambda r: r.model),
    ("format", lambda r: r.format),
    ("precision", lambda r: r.precision),
    ("device", lambda r: r.device),
    ("runtime", lambda r: r.runtime),
    ("accelerator", lambda r: r.accelerator),
    ("input", lambda r: "x".join(map(str, r.input_shape)) if r.input_shape else None),
    ("median ms", lambda r: _ms(r.ms_median)),
    ("p90 ms", lambda r: _ms(r.ms_p90)),
    ("p95 ms", lambda r: _ms(r.ms_p95)),
    ("mean ± std ms", lambda r: _ms(r.ms_mean) + ("" if r.ms_std is None else f" ± {_ms(r.ms_std)}")),
    ("min ms", lambda r: _ms(r.ms_min)),
    ("runs", lambda r: f"{r.runs} (+{r.warmup})"),
    ("PSNR dB", lambda r: None if r.parity_psnr_db is None else f"{r.parity_psnr_db:.2f}"),
    ("delegation", lambda r: r.delegation),
)


#: Right-aligned (numeric) columns of the table.
_NUMERIC = {"median ms", "p90 ms", "p95 ms", "mean ± std ms", "min ms", "runs", "PSNR dB"}
#: Marker per precision in the plot (anything else: a diamond).
_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "w8a8": "v"}


def _ms(v: float | None) -> str | None:
    return None if v is None else f"{v:.2f}"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return " ".join(str(value).replace("|", "\\|").split())


def markdown_table(results: Sequence[BenchResult]) -> str:
    """A GitHub-flavoured Markdown table with one row per result, in the given order.

    Latencies are milliseconds per prediction with two decimals; ``runs`` shows timed runs and, in
    parentheses, warm-up runs; a missing value is ``—``.
    """
    header = "| " + " | ".join(h for h, _ in _COLUMNS) + " |"
    rule = "|" + "|".join("--:" if h in _NUMERIC else "---" for h, _ in _COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(f(r)) for _, f in _COLUMNS) + " |" for r in results]
    return "\n".join([header, rule, *rows]) + "\n"


def write_report(
    results: Sequence[BenchResult], out_dir: str | os.PathLike, force: bool = False, stem: str = "bench"
) -> tuple[Path, Path, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out_dir``.

    Args:
        results: the rows, in display order (at least one).
        out_dir: destination folder, created if missing.
        force: replace existing report files; without it nothing is written if any of them exists.
        stem: file name stem of the three files.

    Returns:
        (json_path, md_path, png_path).

    Raises:
        BenchResultError: ``results`` is empty.
        mobileisp.errors.OutputExistsError: a report file exists and ``force`` is False.
    """
    results = list(results)
    if not results:
        raise BenchResultError("no benchmark results to report")
    out_dir = Path(out_dir)
    paths = tuple(out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    for p in paths:  # refuse before writing anything, so a refused report leaves no partial set
        check_writable(p, force)
    json_path, md_path, png_path = paths
    atomic_write_json(json_path, {"mobileisp_version": __version__, "results": [r.to_dict() for r in results]}, force)
    _plot(results, png_path, force)
    md = [
        "# mobileisp benchmark report",
        "",
        "Latency is wall-clock milliseconds per prediction over the timed runs (warm-up runs in parentheses"
        " are not counted); PSNR is the artefact's output against the fp32 PyTorch reference.",
        "",
        markdown_table(results),
        f"![median latency vs PSNR]({png_path.name})",
        "",
    ]
    atomic_write_text(md_path, "\n".join(md), force)
    return json_path, md_path, png_path


def _plot(results: Sequence[BenchResult], path: Path, force: bool) -> None:
    """Scatter of median latency against PSNR; rows without a PSNR are listed, not plotted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    fig = Figure(figsize=(9.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    plotted = [r for r in results if r.parity_psnr_db is not None]
    for r in plotted:
        label = f"{r.model} {r.precision} · {r.device}" + (f" ({r.accelerator})" if r.accelerator else "")
        ax.scatter([r.ms_median], [r.parity_psnr_db], s=30, marker=_MARKERS.get(r.precision, "D"), label=label)
    if plotted:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    missing = len(results) - len(plotted)
    if missing:
        note = f"{missing} of {len(results)} results have no parity PSNR and are not plotted"
        ax.text(0.5, 0.02, note, transform=ax.transAxes, ha="center", fontsize=8, color="0.4")
    ax.set_xlabel("median latency (ms per prediction)")
    ax.set_ylabel("PSNR vs fp32 PyTorch (dB)")
    ax.set_title("latency vs parity")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, force) as tmp:
        fig.savefig(tmp, format="png")


def load_results(paths: Iterable[str | os.PathLike]) -> list[BenchResult]:
    """Read benchmark results from JSON files.

    Each file holds one result object (what a bench run writes), a list of them, or a report
    (``{"results": [...]}``, what :func:`write_report` writes). Results keep file order.

    Raises:
        BenchResultError: a file is missing, not JSON, or holds a malformed result (the message names
            the file and the result's index).
    """
    out: list[BenchResult] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise BenchResultError(f"{p}: no such result file" if not p.exists() else f"{p} is a folder, not a result file")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise BenchResultError(f"{p} is not a UTF-8 JSON result file") from None
        except json.JSONDecodeError as e:
            raise BenchResultError(f"{p} is not valid JSON (line {e.lineno}: {e.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            items = data["results"]
        elif isinstance(data, list):
            items = data
        else:
            items = [data]
        for i, item in enumerate(items):
            try:
                out.append(BenchResult.from_dict(item))
            except BenchResultError as e:
                where = f"{p}" if len(items) == 1 else f"{p} result {i}"
                raise BenchResultError(f"{where}: {e}") from None
    return out
