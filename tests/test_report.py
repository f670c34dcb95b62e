"""HTML report: structure parsed with the standard library, figures decoded back to images."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from organoid_sim.report import Report, format_value  # noqa: E402


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.headers, self.stack, self.text = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "td":
            self.cells.append(data)
        elif self.stack and self.stack[-1] == "th":
            self.headers.append(data)
        self.text.append(data)


def _parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    return p


def test_figure_is_embedded_as_decodable_png(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.arange(10))
    rep = Report("t").add_figure(fig, caption="a line", dpi=50, png_path=tmp_path / "png" / "line.png")
    assert not plt.fignum_exists(fig.number)  # closed after embedding
    path = rep.save(tmp_path / "out" / "r.html")
    parsed = _parse(path.read_text())
    (img,) = parsed.imgs
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix) and img["alt"] == "a line"
    png = base64.b64decode(img["src"][len(prefix):])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    arr = mpimg.imread(io.BytesIO(png), format="png")
    assert arr.ndim == 3 and arr.shape[0] > 50 and arr.shape[1] > 50
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.html"]  # atomic write, no leftovers
    assert (tmp_path / "png" / "line.png").read_bytes() == png


def test_tables_from_mapping_records_and_nested_mapping():
    rep = Report("tables")
    rep.add_table({"rate (Hz)": 1.23456789, "n": 12345}, caption="summary")
    rep.add_table([{"a": 1, "b": 2.5}, {"a": 3, "c": None}])
    rep.add_table({"poisson": {"bits": 0.1}, "glm": {"bits": 0.2}}, index="model")
    parsed = _parse(rep.to_html())
    assert parsed.headers == ["name", "value", "a", "b", "c", "model", "bits"]
    assert parsed.cells == ["rate (Hz)", "1.235", "n", "12,345", "1", "2.5", "\u2014", "3", "\u2014", "\u2014",
                            "poisson", "0.1", "glm", "0.2"]


def test_text_is_escaped():
    rep = Report("<b>x</b>").add_text("<script>alert(1)</script>").add_pre("a < b").add_heading("h&m")
    out = rep.to_html()
    assert "<script>" not in out and "&lt;script&gt;" in out and "h&amp;m" in out
    assert "<title>&lt;b&gt;x&lt;/b&gt;</title>" in out


@pytest.mark.parametrize("value, text", [(None, "\u2014"), (True, "True"), (3, "3"), (0.000123456, "0.0001235"),
                                         (np.float32(2.5), "2.5"), (np.int64(1000), "1,000"), ("x", "x")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_plate_overview_links_reach_job_folders_with_url_characters_in_their_names(tmp_path):
    """A file stem with '#', '%' or '?' names the job folder; the well's link must still lead there."""
    from urllib.parse import urljoin, urlparse
    from urllib.request import url2pathname

    from organoid_sim.report import plate_overview

    job = "DIV12 #2 50%?/A1"
    result = {"job": job, "file": f"/x/{job.split('/')[0]}.h5", "well": "A1", "status": "ok", "val_bits": 0.5,
              "passed": True, "figures": ["report.html"]}
    page_path = plate_overview([result], tmp_path / "plate.html")
    hrefs = [dict(a)["href"] for a in _links(page_path.read_text())]
    assert len(hrefs) == 3   # one per grid
    for href in hrefs:   # resolved as a browser does: relative to the page, then percent-decoded
        target = url2pathname(urlparse(urljoin(page_path.as_uri(), href)).path)
        assert target == str(tmp_path / job / "report.html")


def _links(text: str) -> list:
    class _A(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found = []

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self.found.append(attrs)

    p = _A()
    p.feed(text)
    return p.found
