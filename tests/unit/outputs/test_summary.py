import csv
import io
import math

from anomalib_folder_ext.outputs.summary import CSV_COLUMNS, ImageResult, csv_text, most_anomalous, score_statistics, summary_text


def rows():
    return [
        ImageResult("a.png", npy="a_anomaly.npy", png="a_anomaly.png", score=0.5, raw_min=-1, raw_mean=0.1,
                    norm_mean=0.3, pred_score=0.4, pred_label=False, decision="ok", defect_area=0, width=10, height=20),
        ImageResult("b.png", status="failed", error="OSError: truncated file"),
        ImageResult("c.png", npy="c_anomaly.npy", score=2.0, raw_min=0, raw_mean=1, norm_mean=0.5,
                    pred_score=0.9, pred_label=True, decision="defect", defect_area=12, width=10, height=20),
        ImageResult("d.png", npy="d_anomaly.npy", score=1.0, raw_min=0, raw_mean=0.5, norm_mean=0.4,
                    pred_score=0.6, pred_label=True, decision="defect", defect_area=3, width=10, height=20),
    ]


def test_csv_has_the_documented_columns_and_one_row_per_image():
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows()))))
    assert tuple(parsed[0].keys()) == CSV_COLUMNS
    for required in ("image", "status", "error", "npy", "png", "score", "raw_min", "raw_mean", "norm_mean",
                     "pred_score", "pred_label"):
        assert required in CSV_COLUMNS
    assert [r["image"] for r in parsed] == ["a.png", "b.png", "c.png", "d.png"]
    assert parsed[1]["status"] == "failed" and parsed[1]["error"] == "OSError: truncated file"
    assert parsed[1]["score"] == "" and parsed[1]["pred_label"] == ""
    assert parsed[0]["png"] == "a_anomaly.png" and parsed[2]["png"] == ""
    assert float(parsed[2]["score"]) == 2.0 and parsed[2]["pred_label"] == "true"


def test_statistics_ignore_failed_rows():
    stats = score_statistics(rows())
    assert (stats["images"], stats["ok"], stats["failed"], stats["above_threshold"]) == (4, 3, 1, 2)
    assert (stats["decided"], stats["decided_defect"], stats["decided_uncertain"], stats["decided_ok"]) == (3, 2, 0, 1)
    assert stats["score_min"] == 0.5 and stats["score_max"] == 2.0 and stats["score_median"] == 1.0
    assert math.isclose(stats["score_mean"], 3.5 / 3)
    assert math.isclose(stats["score_p95"], 1.9)


def test_top_list_is_highest_score_first():
    assert [r.image for r in most_anomalous(rows(), 2)] == ["c.png", "d.png"]


def test_summary_text_has_parameters_statistics_top_list_and_failures():
    text = summary_text({"checkpoint": "m.ckpt", "batch size": 8}, rows(), top_count=2)
    assert "checkpoint : m.ckpt" in text
    assert "3 ok, 1 failed, 4 total" in text
    assert "  decided          : 2 defect, 1 ok (the thresholds above)\n" in text
    top = text.split("Most anomalous images (top 2 by score)")[1]
    assert top.index("c.png") < top.index("d.png")
    assert "b.png: OSError: truncated file" in text
    table = text.split("Per-image results (input order)")[1]
    assert table.index("a.png") < table.index("b.png") < table.index("c.png")


def test_empty_run_still_renders():
    assert "0 ok, 0 failed, 0 total" in summary_text({}, [])
