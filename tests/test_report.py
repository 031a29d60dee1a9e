"""The HTML report and the terminal summary; the page itself is checked in a real headless Chromium."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from mtpb.charts import heat_color
from mtpb.formatting import fmt_params
from mtpb.report import difficulty_levels_text, write_report
from mtpb.rundir import RunDirError
from mtpb.terminal import print_summary
from tests.fixtures.reports import runs

CHROMIUM = "/usr/bin/chromium"



@pytest.fixture
def report(tmp_path):
    dirs, problems = runs.write_fixture(tmp_path)
    out = tmp_path / "out" / "report.html"
    facts = write_report(dirs, str(out), [str(problems)])
    return facts, out.read_text(encoding="utf-8"), dirs, problems


def test_write_report_returns_facts(report):
    facts, html, _, _ = report
    assert set(facts) >= {"path", "bytes", "seconds", "warnings"}
    assert Path(facts["path"]).exists() and facts["bytes"] == len(html.encode("utf-8"))
    assert facts["seconds"] > 0
    assert any("differ in temperature" in w for w in facts["warnings"])
    assert not Path(facts["path"] + ".tmp").exists()


def test_report_is_self_contained(report):
    _, html, _, _ = report
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    assert "@import" not in html
    # The only URL is the SVG namespace, which is a name, not something fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert re.search(r"url\((?!data:)", html) is None


def test_report_shows_the_numbers_and_warnings(report):
    _, html, _, _ = report
    summary = html[html.index('id="summary-table"'):html.index("</table>", html.index('id="summary-table"'))]
    for text in ("50.0", "30.0", "57.5", "70.0", "75.0", "350M", "2B", "single", "pass@5"):
        assert text in summary
    assert "differ in temperature" in html and "C covers 4 of the 5 problems" in html
    for chart in ("chart-size", "chart-n_turns", "chart-category", "chart-difficulty", "chart-modes",
                  "chart-pass-at-k"):
        assert f'id="{chart}"' in html
    assert html.count("<svg") == 6
    assert 'id="heatmap-table"' in html and 'href="#p-5"' in html
    assert html.count('<details class="problem"') == 5


def test_report_escapes_program_output(report):
    _, html, _, _ = report
    assert "&#39;wrong &lt;b&gt;&#39;" in html and "'wrong <b>'" not in html
    assert "ZeroDivisionError: division by zero" in html


def test_report_examples_per_problem(report):
    _, html, _, _ = report
    block = html[html.index('id="p-2"'):html.index('id="p-3"')]
    # A and C: a pass and the most frequent failure; B never passes and fails one way only.
    assert block.count('class="example"') == 5
    assert "print(&#39;p2 t0 s0&#39;)" in block
    assert "passed 1, failed 5, error 3, timeout 1" in block


def test_report_without_suite_marks_categories_unknown(tmp_path):
    dirs, _ = runs.write_fixture(tmp_path)
    empty = tmp_path / "no-problems"
    empty.mkdir()
    facts = write_report(dirs, str(tmp_path / "r.html"), [str(empty)])
    html = (tmp_path / "r.html").read_text()
    assert any("5 problem(s) not in the loaded problem files" in w for w in facts["warnings"])
    assert "P3 turn 2 for test 0." in html


def test_malformed_line_does_not_stop_the_report(tmp_path):
    dirs, problems = runs.write_fixture(tmp_path)
    with open(Path(dirs[1]) / "results.jsonl", "a") as f:
        f.write("{oops\n")
    facts = write_report(dirs, str(tmp_path / "r.html"), [str(problems)])
    assert any("results.jsonl:51" in w and "malformed" in w for w in facts["warnings"])


def test_output_never_overwrites_anything_but_a_report(tmp_path):
    dirs, problems = runs.write_fixture(tmp_path)
    manifest = Path(dirs[0]) / "run.json"
    before = manifest.read_bytes()
    for target, message in ((manifest, "is not an HTML report"), (tmp_path, "is not an HTML report"),
                            (Path(""), "give a file name")):
        with pytest.raises(RunDirError, match=message):
            write_report(dirs, str(target), [str(problems)])
    assert manifest.read_bytes() == before
    out = tmp_path / "r.html"
    write_report(dirs, str(out), [str(problems)])
    write_report(dirs, str(out), [str(problems)])        # an earlier report is replaced
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="cannot write the report"):
        write_report(dirs, str(tmp_path / "file" / "r.html"), [str(problems)])
    assert not list(tmp_path.glob("**/*.tmp"))


def test_missing_manifest_raises(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(RunDirError, match="run.json"):
        write_report([str(tmp_path / "run")], str(tmp_path / "r.html"))


def test_print_summary(tmp_path):
    from rich.console import Console

    dirs, problems = runs.write_fixture(tmp_path)
    console = Console(record=True, width=200, color_system=None)
    print_summary(dirs, console, [str(problems)])
    text = console.export_text()
    assert re.search(r"A\s+m-350M\s+350M\s+multi\s+5\s+0\.2\s+50\.0\s+[\d.]+–[\d.]+\s+50\.0\s+70\.0", text), text
    assert "57.5" in text and "pass@5" in text and "75.0" in text
    assert "warning:" in text and "differ in temperature" in text


def test_print_summary_in_a_narrow_terminal_keeps_the_figures(tmp_path):
    from rich.console import Console

    dirs, problems = runs.write_fixture(tmp_path)
    console = Console(record=True, width=60, color_system=None)
    print_summary(dirs, console, [str(problems)])
    text = console.export_text()
    assert all(len(line) <= 60 for line in text.splitlines())
    assert re.search(r"C\s+m-2B\s+.*57\.5", text), text
    assert "not shown for lack of width" in " ".join(text.split())


def test_formatting_helpers():
    assert [fmt_params(x) for x in (None, 350_000_000, 2_700_000_000, 16_100_000_000, 125_000, 7)] == [
        "—", "350M", "2.7B", "16.1B", "125K", "7"]
    assert heat_color(0)[1] == "#000" and heat_color(100)[1] == "#fff"


def test_difficulty_note_is_written_from_the_bins(report):
    _, html, _, _ = report
    text = difficulty_levels_text()
    assert text == "easy ≥ 70%, medium 30–70%, hard below 30%, unsolved 0% in every run"
    assert text in html
    # Other bins, other words: the note follows the bins rather than restating them.
    bins = (("easy", 80.0), ("medium", 40.0), ("hard", 1e-9), ("unsolved", float("-inf")))
    assert difficulty_levels_text(bins) == "easy ≥ 80%, medium 40–80%, hard below 40%, unsolved 0% in every run"


# ---------------------------------------------------------------- in a real browser

class DevTools:
    """Minimal Chrome DevTools Protocol client over the loopback websocket."""

    def __init__(self, folder: Path):
        import websocket  # websocket-client, a dev dependency

        self.profile = folder / "profile"
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one from an earlier browser names a dead port
        self.log = open(folder / "chromium.log", "w")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start; see {folder / 'chromium.log'}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = None
        try:
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60,
                                                  suppress_origin=True)
        except Exception:
            self.close()  # never leave a browser behind
            raise
        self.next_id, self.events, self.session = 0, [], None

    def send(self, method: str, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def open_page(self):
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def viewport(self, width: int, height: int, mobile: bool = False):
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)

    def screenshot(self, path: Path):
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def errors(self) -> list:
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(params["exceptionDetails"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(params.get("args"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"])
        return out

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self):
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


CHART_BOXES = """JSON.stringify(Array.from(document.querySelectorAll('svg.chart')).map(function (s) {
  var r = s.getBoundingClientRect();
  return {id: s.closest('figure').id, width: r.width, height: r.height,
          shapes: s.querySelectorAll('rect, circle, polyline').length};
}))"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium (CI installs it)")
def test_report_in_headless_chromium(tmp_path, report):
    facts, _, _, _ = report
    url = Path(facts["path"]).resolve().as_uri()
    browser = DevTools(tmp_path)
    try:
        browser.open_page()
        browser.viewport(1200, 900)
        browser.send("Page.navigate", url=url)
        browser.wait_for("Page.loadEventFired")

        charts = json.loads(browser.evaluate(CHART_BOXES))
        assert [c["id"] for c in charts] == ["chart-size", "chart-n_turns", "chart-category",
                                             "chart-difficulty", "chart-modes", "chart-pass-at-k"]
        for chart in charts:
            assert chart["width"] > 100 and chart["height"] > 50, chart
            assert chart["shapes"] > 0, chart
        bars = browser.evaluate("document.querySelector('#chart-category svg rect').getBBox().height")
        assert bars > 0

        # Sorting: click "Pass rate" twice -> descending order of the runs.
        order = browser.evaluate("""(function () {
            var th = Array.from(document.querySelectorAll('#summary-table th'))
                .find(function (h) { return h.textContent.trim() === 'Pass rate'; });
            th.click(); th.click();
            return Array.from(document.querySelectorAll('#summary-table tbody tr'))
                .map(function (r) { return r.cells[0].textContent.trim(); }).join(',');
        })()""")
        assert order == "C,A,B"

        browser.screenshot(tmp_path / "report-wide.png")

        # A link to a problem opens its details; the filter hides other problems.
        opened = browser.evaluate("new Promise(function (done) { location.hash = '#p-3'; setTimeout("
                                  "function () { done(document.getElementById('p-3').open); }, 200); })")
        assert opened is True
        visible = browser.evaluate("""(function () {
            var f = document.getElementById('problem-filter');
            f.value = 'string'; f.dispatchEvent(new Event('input'));
            return Array.from(document.querySelectorAll('#heatmap-table tbody tr'))
                .filter(function (r) { return !r.hidden; }).length;
        })()""")
        assert visible == 1
        browser.evaluate("var f = document.getElementById('problem-filter'); f.value = '';"
                         "f.dispatchEvent(new Event('input')); true")
        browser.screenshot(tmp_path / "report-problem.png")

        # Narrow window: no horizontal scrolling of the page itself (wide tables scroll in their box).
        browser.viewport(375, 800, mobile=True)
        errors, urls = browser.errors(), browser.requested_urls()
        browser.events.clear()  # so the wait below sees the new page's load event
        browser.send("Page.navigate", url=url + "?narrow")  # a new document, not a jump within it
        browser.wait_for("Page.loadEventFired")
        widths = json.loads(browser.evaluate(
            "JSON.stringify([document.documentElement.scrollWidth, window.innerWidth])"))
        assert widths[0] <= widths[1] + 1, widths
        narrow = json.loads(browser.evaluate(CHART_BOXES))
        assert all(0 < c["width"] <= 375 for c in narrow), narrow
        browser.screenshot(tmp_path / "report-narrow.png")

        assert errors + browser.errors() == []
        urls += browser.requested_urls()
        assert any(u.startswith("file:") for u in urls)
        offsite = [u for u in urls if not u.startswith(("file:", "data:", "about:"))]
        assert offsite == []
    finally:
        browser.close()
    for name in ("report-wide.png", "report-problem.png", "report-narrow.png"):
        shot = tmp_path / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
