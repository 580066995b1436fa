// report.html's review: a threshold slider over the score histogram, the counts a relabel at that threshold
// gives (decision rule: defect when score >= threshold), the images nearest to it, the command to copy.
// Plain JavaScript on the page's own data: no network, no library. A threshold in the address
// (report.html#threshold=0.31) is set as the slider sets it.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const scores = data.scores.map((item) => item[1]).sort((a, b) => a - b);
  const byScore = data.scores.slice().sort((a, b) => a[1] - b[1]);
  const slider = document.getElementById("threshold-slider");
  const review = document.getElementById("review");
  const line = document.getElementById("threshold-line");
  const text = (id, value) => { document.getElementById(id).textContent = value; };

  function atOrAbove(threshold) {  // how many scores are >= threshold (binary search on the sorted scores)
    let low = 0, high = scores.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (scores[middle] >= threshold) high = middle; else low = middle + 1;
    }
    return scores.length - low;
  }

  function shown(value) { return Number(value.toPrecision(6)).toString(); }

  function setThreshold(threshold) {
    const defect = atOrAbove(threshold);
    review.dataset.threshold = String(threshold);
    review.dataset.defect = String(defect);
    review.dataset.ok = String(scores.length - defect);
    text("t-value", shown(threshold));
    text("n-defect", defect.toLocaleString("en-US"));
    text("n-ok", (scores.length - defect).toLocaleString("en-US"));
    const command = `anomalib-folder relabel ${data.output_dir} --threshold ${threshold}`;
    text("snippet-flag", `--threshold ${threshold}`);
    text("snippet-relabel", command);
    text("snippet-config", `threshold: ${threshold}`);
    if (line && data.max > data.min) {
      const x = Math.min(Math.max((threshold - data.min) / (data.max - data.min), 0), 1) * data.width;
      line.setAttribute("x1", x.toFixed(1));
      line.setAttribute("x2", x.toFixed(1));
    }
    const split = byScore.length - defect;  // the first index at or above the threshold
    const near = byScore.slice(Math.max(0, split - data.near), split + data.near);
    const body = document.getElementById("nearest-rows");
    body.replaceChildren(...near.map(([name, score]) => {
      const row = document.createElement("tr");
      for (const value of [name, shown(score), score >= threshold ? "defect" : "ok"]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.append(cell);
      }
      if (score >= threshold) row.className = "defect";
      return row;
    }));
  }

  slider.addEventListener("input", () => setThreshold(slider.valueAsNumber));
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => {
      const code = document.getElementById(button.dataset.copy);
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (navigator.clipboard) navigator.clipboard.writeText(code.textContent).catch(() => document.execCommand("copy"));
      else document.execCommand("copy");
    });
  }
  const asked = /(?:^#|&)threshold=([^&]+)/.exec(window.location.hash);
  const start = asked && Number.isFinite(parseFloat(decodeURIComponent(asked[1])))
    ? parseFloat(decodeURIComponent(asked[1])) : data.threshold ?? data.max;
  slider.value = String(start);
  setThreshold(start);
})();
