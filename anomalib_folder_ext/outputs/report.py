"""A look at a finished run: ``report.html`` (self-contained, offline) and ``report.png`` (a contact sheet).

Built only from what is on disk (the rows of ``results.csv``, the written maps and the input
images), once, at the end of a run, so it never slows the predict loop and can be rebuilt for an
old run. The HTML carries its thumbnails inline (base64 JPEG) and its histogram as SVG: it opens
from ``file://`` with no network, and its links lead to the full-size files next to it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image, ImageDraw

from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.outputs import artifacts
from anomalib_folder_ext.outputs.artifacts import display_name
from anomalib_folder_ext.images.decode import decode_rgb
from anomalib_folder_ext.outputs.maps import quantize
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.review import legend, review_section
from anomalib_folder_ext.outputs.summary import ImageResult, decisions_text, most_anomalous, score_statistics

REPORT_HTML = "report.html"
REPORT_PNG = "report.png"
THUMBNAIL = 160


@dataclass
class ReportItem:
    """One of the most anomalous images: its row, and thumbnails of the input and of its map over it."""

    row: ImageResult
    image: np.ndarray | None
    overlay: np.ndarray | None


def file_href(relative: str) -> str:
    """A link to a file near the page: URL-encoded and relative, so a name is never read as a scheme
    (``javascript:x.png``), a fragment (``#``) or a query (``?``).

    Example:
        >>> file_href("javascript:alert(1);x_anomaly.png"), file_href("a #1?.png"), file_href("../out/report.html")
        ('./javascript%3Aalert%281%29%3Bx_anomaly.png', './a%20%231%3F.png', '../out/report.html')
    """
    encoded = quote(relative, safe="/")
    return encoded if encoded.startswith("../") else f"./{encoded}"


def score_histogram(rows: Sequence[ImageResult], bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of the ok images' scores (one bin around a single value)."""
    scores = np.array([row.score for row in rows if row.status == "ok"], dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0, dtype=int), np.zeros(1)
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.histogram(scores, bins=bins, range=(low, high))


def _thumbnail(image: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    picture = Image.fromarray(image)
    picture.thumbnail((size, size), Image.BILINEAR)
    return np.asarray(picture)


def report_items(
    rows: Sequence[ImageResult], output_dir: Path, folder: Path, top_k: int, lut: np.ndarray, alpha: float = 0.5
) -> list[ReportItem]:
    """Thumbnails of the ``top_k`` highest scores: the overlay file if written, else the PNG's levels
    (or the NPY) laid over the input image; an input or a map that cannot be read shows what remains."""
    items = []
    for row in most_anomalous(rows, top_k):
        try:
            image = decode_rgb(folder / row.image)
        except Exception:  # noqa: BLE001 - moved or deleted since the run: show what remains
            image = None
        try:
            overlay = _overlay(row, output_dir, image, lut, alpha)
        except Exception:  # noqa: BLE001 - a map deleted or damaged since it was written
            overlay = None
        items.append(ReportItem(
            row, _thumbnail(image) if image is not None else None, _thumbnail(overlay) if overlay is not None else None
        ))
    return items


def _overlay(row: ImageResult, output_dir: Path, image: np.ndarray | None, lut: np.ndarray, alpha: float) -> np.ndarray | None:
    overlay = None
    if row.overlay:
        overlay = decode_rgb(output_dir / row.overlay)
    else:
        levels = None
        if row.png:
            levels = np.asarray(Image.open(output_dir / row.png))
        elif row.npy:
            levels = quantize(torch.from_numpy(np.load(output_dir / row.npy))).numpy()
        if levels is not None:
            overlay = artifacts.blend_overlay(image, levels, lut, alpha) if image is not None else lut[levels]
    return overlay


def _data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def html_text(
    title: str, parameters: Mapping[str, object], rows: Sequence[ImageResult], items: Sequence[ReportItem],
    thresholds: Thresholds | None = None, output_dir: str = ".", lut: np.ndarray | None = None,
) -> str:
    stats = score_statistics(rows)
    counts, edges = score_histogram(rows)
    escape = html.escape
    decided = f"; decided: <b>{decisions_text(stats)}</b>" if stats["decided"] else ""
    facts = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in parameters.items())
    cards = []
    for rank, item in enumerate(items, 1):
        row = item.row
        links = " ".join(f'<a href="{escape(file_href(name))}">{label}</a>' for label, name in
                         (("NPY", row.npy), ("PNG", row.png), ("overlay", row.overlay)) if name)
        pictures = "".join(
            f'<img src="{_data_uri(picture)}" alt="{escape(alt)} of {escape(display_name(row.image))}">'
            for alt, picture in (("input", item.image), ("map over the input", item.overlay)) if picture is not None
        )
        label = f" · {row.decision}" if row.decision else ""
        cards.append(
            f'<div class="card"><div class="pics">{pictures}</div><p><b>{rank}. {escape(display_name(row.image))}</b><br>'
            f"score {row.score:.6g} · pred_score {row.pred_score:.3f}{label}<br>{links}</p></div>"
        )
    failed = [row for row in rows if row.status != "ok"]
    failed_html = "".join(f"<li>{escape(display_name(row.image))}: {escape(display_name(row.error))}</li>" for row in failed)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="anomalib-folder-ext"><title>{escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.card {{ border: 1px solid #ccc; border-radius: 6px; padding: 8px; width: {2 * THUMBNAIL + 12}px; }}
.pics {{ display: flex; gap: 4px; }} .pics img {{ width: {THUMBNAIL}px; height: auto; }}
tr.defect td {{ color: #b00000; }} code {{ background: #f2f2f2; padding: 1px 4px; }}
.legend .ticks {{ display: flex; justify-content: space-between; width: 560px; font-size: 11px; }}
</style></head>
<body>
<h1>{escape(title)}</h1>
<p><b>{stats['images']}</b> images: <b>{stats['ok']}</b> ok, <b>{stats['failed']}</b> failed{decided}.</p>
<h2>Scores and the threshold</h2>
{review_section(rows, thresholds, output_dir, counts, edges)}
<h2>Most anomalous images (top {len(items)} by score)</h2>
{legend(lut, str(parameters.get("normalization", ""))) if lut is not None else ""}
<div class="cards">{''.join(cards)}</div>
{f'<h2>Failed images ({len(failed)})</h2><ul>{failed_html}</ul>' if failed else ''}
<h2>Run</h2><table>{facts}</table>
<p>All rows: <a href="./results.csv">results.csv</a> · <a href="./results_summary.txt">results_summary.txt</a></p>
<script>
window.addEventListener("load", () => {{
  const images = [...document.images];
  document.body.dataset.imagesLoaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = images.length;
}});
</script>
</body></html>
"""


def contact_sheet(title: str, rows: Sequence[ImageResult], items: Sequence[ReportItem], columns: int = 4,
                  thresholds: Thresholds | None = None) -> np.ndarray:
    """The top images (input | map over it, with rank and score) and the score histogram, as one RGB image."""
    cell_w, cell_h, pad = 2 * THUMBNAIL + 4, THUMBNAIL + 34, 12
    grid_rows = max(1, -(-len(items) // columns))
    width = columns * (cell_w + pad) + pad
    hist_h = 150
    height = 40 + grid_rows * (cell_h + pad) + hist_h + 40
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    stats = score_statistics(rows)
    decided = f", decided {decisions_text(stats)}" if stats["decided"] else ""
    draw.text((pad, 10), f"{title}: {stats['images']} images, {stats['ok']} ok, {stats['failed']} failed"
                         f"{decided}; top {len(items)} by score", fill="black")
    for index, item in enumerate(items):
        x = pad + (index % columns) * (cell_w + pad)
        y = 40 + (index // columns) * (cell_h + pad)
        for offset, picture in ((0, item.image), (THUMBNAIL + 4, item.overlay)):
            if picture is not None:
                sheet.paste(Image.fromarray(picture), (x + offset, y))
        draw.text((x, y + THUMBNAIL + 4), f"{index + 1}. {display_name(item.row.image)}"[:48], fill="black")
        draw.text((x, y + THUMBNAIL + 18), f"score {item.row.score:.5g}", fill="black")
    counts, edges = score_histogram(rows)
    base = height - 40
    if counts.size:
        bar = (width - 2 * pad) / counts.size
        for i, count in enumerate(counts.tolist()):
            bar_h = (hist_h - 20) * count / max(int(counts.max()), 1)
            draw.rectangle([pad + i * bar + 1, base - bar_h, pad + (i + 1) * bar - 1, base], fill=(59, 111, 182))
        draw.text((pad, base + 6), f"{edges[0]:.4g}", fill="black")
        draw.text((width - pad - 60, base + 6), f"{edges[-1]:.4g}", fill="black")
        draw.text((width // 2 - 80, base + 6), "score histogram (max of the raw map)", fill="black")
        if thresholds is not None and thresholds.decides and edges[-1] > edges[0]:
            share = min(max((thresholds.image - edges[0]) / (edges[-1] - edges[0]), 0.0), 1.0)
            x = pad + share * (width - 2 * pad)
            draw.line([x, base - hist_h + 10, x, base], fill=(200, 0, 0), width=2)
            draw.text((x + 4, base - hist_h + 10), f"image threshold {thresholds.image:.4g}", fill=(200, 0, 0))
    draw.line([pad, base, width - pad, base], fill="black")
    return np.asarray(sheet)


def write_report(
    output_dir: OwnedDir,
    folder: str | Path,
    rows: Sequence[ImageResult],
    parameters: Mapping[str, object],
    top_k: int = 12,
    colormap: str = "jet",
    alpha: float = 0.5,
    thresholds: Thresholds | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.png`` into ``output_dir``; their paths."""
    folder = Path(folder)
    title = f"Anomaly report: {folder.resolve().name}"
    lut = artifacts.colormap_lut(colormap)
    items = report_items(rows, output_dir.real, folder, top_k, lut, alpha)
    page = html_text(title, parameters, rows, items, thresholds, output_dir.path.as_posix(), lut)
    output_dir.write(REPORT_HTML, page.encode())
    output_dir.write(REPORT_PNG, artifacts.encode_overlay(contact_sheet(title, rows, items, thresholds=thresholds), "png"))
    return output_dir.path / REPORT_HTML, output_dir.path / REPORT_PNG


def index_html(reports: Sequence, title: str = "Batch folders") -> str:
    """One page linking every folder's report of a multi-folder run, with its counts and top score.

    ``reports`` are :class:`~anomalib_folder_ext.outputs.summary.BatchReport` objects; links are relative
    to the page, which sits in the output root.
    """
    escape = html.escape
    lines = []
    for report in reports:
        stats = score_statistics(report.rows)
        top = f"{stats['score_max']:.6g}" if stats["ok"] else ""
        folder = report.output_dir
        links = " · ".join(f'<a href="{escape(file_href(f"{folder}/{name}"))}">{label}</a>'
                           for label, name in (("report", REPORT_HTML), ("results.csv", "results.csv")))
        lines.append(
            f"<tr><td>{escape(display_name(report.name))}</td><td>{stats['images']}</td><td>{stats['ok']}</td>"
            f"<td>{stats['failed']}</td><td>{stats['decided_defect']}</td><td>{top}</td><td>{links}</td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="anomalib-folder-ext"><title>{escape(title)}</title>
<style>body {{ font-family: sans-serif; margin: 24px; }} td, th {{ padding: 2px 14px 2px 0; text-align: left; }}</style>
</head><body><h1>{escape(title)}</h1>
<table><tr><th>batch</th><th>images</th><th>ok</th><th>failed</th><th>defect</th><th>max score</th><th></th></tr>
{"".join(lines)}</table>
<p>Every image: <a href="./all_batches.csv">all_batches.csv</a> · <a href="./all_batches_summary.txt">all_batches_summary.txt</a></p>
</body></html>
"""
