"""The review part of ``report.html``: the score histogram with the thresholds drawn, a slider that moves
the image threshold and shows the counts and the images nearest to it as a relabel at that threshold
would decide them, the command to copy, and the colour legend of the maps.

The page carries each part's score (as the journal has it, full precision) and runs
:file:`review.js` on them: offline, no library. The rule is the run's (:mod:`anomalib_folder_ext.decision.rule`):
``defect`` when the score is at or above the threshold; the slider sets the image threshold alone, as
``anomalib-folder relabel DIR --threshold X`` does (no band).
"""

from __future__ import annotations

import base64
import html
import io
import json
import shlex
from collections.abc import Sequence
from importlib import resources

import numpy as np

from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.outputs.summary import ImageResult

WIDTH, HEIGHT = 560, 160
NEAR = 6  # images shown on each side of the threshold


def page_data(rows: Sequence[ImageResult], thresholds: Thresholds | None, output_dir: str, edges: np.ndarray) -> str:
    """The review's data as JSON safe inside a ``<script>`` element (``</`` never closes it early).

    Example:
        >>> text = page_data([ImageResult("</script>.png", score=0.5)], Thresholds(image=0.4), "out", np.array([0.0, 1.0]))
        >>> "</script>" in text, json.loads(text.replace("<\\\\/", "</"))["scores"]
        (False, [['</script>.png', 0.5]])
    """
    values = {"scores": [[row.image, row.score] for row in rows if row.status == "ok"],
              "threshold": thresholds.image if thresholds is not None else None,
              "output_dir": shlex.quote(output_dir), "min": float(edges[0]), "max": float(edges[-1]), "width": WIDTH, "near": NEAR}
    return json.dumps(values).replace("</", "<\\/")


def x_of(value: float, edges: np.ndarray) -> float:
    span = float(edges[-1] - edges[0])
    return min(max((value - float(edges[0])) / span, 0.0), 1.0) * WIDTH if span > 0 else 0.0


def histogram(counts: np.ndarray, edges: np.ndarray, thresholds: Thresholds | None) -> str:
    """The scores' histogram as SVG, the thresholds in force drawn on it, and the slider's line."""
    top = max(int(counts.max()), 1)
    bar = WIDTH / counts.size
    parts = [f'<rect x="{i * bar + 1:.1f}" y="{HEIGHT - 20 - (HEIGHT - 30) * c / top:.1f}" width="{bar - 2:.1f}" '
             f'height="{(HEIGHT - 30) * c / top:.1f}" fill="#3b6fb6"><title>{c} images, score {edges[i]:.4g} to '
             f"{edges[i + 1]:.4g}</title></rect>" for i, c in enumerate(counts.tolist())]
    marks = [] if thresholds is None or not thresholds.decides else [("image threshold", thresholds.image, "#7a0000", "4 3")]
    if thresholds is not None and thresholds.uncertain_below is not None:
        marks.append(("uncertain from", thresholds.uncertain_below, "#d08000", "4 3"))
    for name, value, colour, dash in marks:
        x = x_of(value, edges)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{HEIGHT - 20}" stroke="{colour}" stroke-width="2" '
                     f'stroke-dasharray="{dash}"><title>{name} {value:.6g} (in force)</title></line>')
    parts.append(f'<line id="threshold-line" x1="0" x2="0" y1="0" y2="{HEIGHT - 20}" stroke="#e00000" stroke-width="2">'
                 "<title>the slider's threshold</title></line>")
    parts.append(f'<text x="0" y="{HEIGHT - 4}" font-size="11">{edges[0]:.4g}</text>'
                 f'<text x="{WIDTH}" y="{HEIGHT - 4}" font-size="11" text-anchor="end">{edges[-1]:.4g}</text>'
                 f'<text x="{WIDTH / 2}" y="{HEIGHT - 4}" font-size="11" text-anchor="middle">score (max of the raw map)</text>')
    return f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="score histogram">{"".join(parts)}</svg>'


def legend(lut: np.ndarray, normalization: str) -> str:
    """The maps' colours: the colormap as a bar from 0 to 1, and what 0, 0.5 and 1 mean in this run."""
    from PIL import Image

    bar = Image.fromarray(np.repeat(np.asarray(lut, dtype=np.uint8)[None, :, :], 12, axis=0))
    buffer = io.BytesIO()
    bar.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return (f'<div class="legend"><p>Map colours, 0 to 1: {html.escape(normalization)}</p>'
            f'<img src="{uri}" width="{WIDTH}" height="12" alt="colour scale of the maps">'
            f'<div class="ticks"><span>0</span><span>0.5</span><span>1</span></div></div>')


def review_section(rows: Sequence[ImageResult], thresholds: Thresholds | None, output_dir: str, counts: np.ndarray,
                   edges: np.ndarray) -> str:
    """The histogram, the slider, the counts, the nearest images and the snippets (empty without a score)."""
    if counts.size == 0:
        return "<p>No scores: no image was processed.</p>"
    escape = html.escape
    in_force = ("; ".join(f"{name} {value}" for name, value in thresholds.parameters().items())
                if thresholds is not None else "none")
    script = resources.files("anomalib_folder_ext.outputs").joinpath("review.js").read_text(encoding="utf-8")
    return f"""{histogram(counts, edges, thresholds)}
<div id="review">
<p><label for="threshold-slider">Image threshold</label>
<input type="range" id="threshold-slider" min="{float(edges[0])!r}" max="{float(edges[-1])!r}" step="any" style="width:{WIDTH}px"></p>
<p class="counts">At <b id="t-value"></b> (raw score): <b id="n-defect"></b> defect, <b id="n-ok"></b> ok.
In force when the run was decided: {escape(in_force)}.</p>
<p>Copy: <code id="snippet-flag"></code> <button type="button" data-copy="snippet-flag">copy</button>
<code id="snippet-relabel"></code> <button type="button" data-copy="snippet-relabel">copy</button>
<code id="snippet-config"></code> <button type="button" data-copy="snippet-config">copy</button> (the writer's key in a config)</p>
<table><thead><tr><th>nearest the threshold</th><th>score</th><th>at the slider</th></tr></thead>
<tbody id="nearest-rows"></tbody></table>
</div>
<script type="application/json" id="review-data">{page_data(rows, thresholds, output_dir, edges)}</script>
<script>{script}</script>"""
