"""Drives Debian's QtWebEngine 5.15 (python3-pyqt5.qtwebengine; Chromium 87,
the engine generation of 2021-2022 smart TVs) for server/tests/old_engines.rs.

Usage: /usr/bin/python3 drive.py URL SECONDS

Loads URL in a visible QWebEngineView on Qt's offscreen platform and, every
quarter of a second for SECONDS, prints one JSON line describing what the
page shows: {"t": seconds, "state": {...}} where state is the page's answer
to the probe below (the build chosen, the frame on screen and its text, the
worker's statistics, the viewer's start-up milestones in ms since the
navigation start, the unsupported message). Every console message is
printed as {"console": level, "message": ..., "source": ..., "line": ...}
(level 2 is an error), and the user agent first as {"ua": ...}. Only a
driver: every judgement is the Rust test's.
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Root in a container: Chromium's sandbox cannot start.
os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
# No OpenGL offscreen: software compositing.
os.environ.setdefault("QT_QUICK_BACKEND", "software")
os.environ.setdefault(
    "QTWEBENGINE_CHROMIUM_FLAGS",
    # Offscreen has no OpenGL: without an in-process GPU thread the renderer
    # never starts ("Zygote could not fork").
    "--no-sandbox --disable-gpu --disable-gpu-compositing --in-process-gpu"
    " --disable-background-networking --disable-component-update",
)

from PyQt5.QtCore import QTimer, QUrl  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402
from PyQt5.QtWebEngineWidgets import QWebEnginePage, QWebEngineProfile, QWebEngineView  # noqa: E402

PROBE = """(function () {
  var v = window.donutViewer, s = window.DonutSupport, box = document.getElementById('unsupported');
  var frame = null, text = null;
  try { if (v) { frame = v.currentFrame(); text = v.currentText(); } } catch (e) { text = 'error: ' + e; }
  return JSON.stringify({
    build: s && s.build ? s.build.name : null,
    missing: s && s.build ? s.build.missing : null,
    frame: frame === undefined ? null : frame,
    text: text === undefined ? null : text,
    worker: window.donutWorkerStats || null,
    milestones: v ? v.milestones() : null,
    unsupported: box && !box.hidden ? box.innerText : null,
    connection: (document.querySelector('[data-stat=connection]') || {}).textContent || null
  });
})()"""


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Page(QWebEnginePage):
    def javaScriptConsoleMessage(self, level, message, line, source):
        emit({"console": int(level), "message": message, "line": line, "source": source})


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    app = QApplication([sys.argv[0]])
    profile = QWebEngineProfile()  # off the record: a fresh profile
    emit({"ua": profile.httpUserAgent()})
    page = Page(profile, None)
    view = QWebEngineView()
    view.setPage(page)
    view.resize(1280, 720)
    view.show()
    started = [0.0]

    def tick():
        started[0] += 0.25
        if started[0] > seconds:
            app.quit()
            return
        page.runJavaScript(PROBE, lambda r: emit({"t": started[0], "state": json.loads(r) if r else None}))

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(250)
    page.load(QUrl(url))
    app.exec_()
    view.close()


if __name__ == "__main__":
    main()
