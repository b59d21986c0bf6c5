"""Screenshot the MLflow runs of the README: runs with validation and OOD scores, their mAP charts.

Run (an MLflow server on :5055 over the project's mlflow.db, Debian's chromium):
``.venv/bin/python docs/mlflow_screenshot.py docs/images/mlflow-runs.png``. Drives headless
chromium over the DevTools protocol: opens the experiment's chart view filtered to runs that
have both scores, types ``map`` into the chart search (only the mAP charts stay) and closes the
assistant panel, then captures the page.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from websockets.sync.client import connect

SERVER = "http://127.0.0.1:5055"
FILTER = "metrics.ood_map > 0 and metrics.val_map > 0"
# React keeps its own value: set the input through the native setter, then fire the input event.
TYPE_SEARCH = """(() => {
  const box = [...document.querySelectorAll('input')].find(i => (i.placeholder || '').includes('metric charts'));
  if (!box) return false;
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(box, 'map');
  box.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})()"""
CLOSE_ASSISTANT = """(() => {
  const close = [...document.querySelectorAll('button')].filter(b => /close/i.test(b.getAttribute('aria-label') || ''));
  close.forEach(b => b.click());
  return close.length;
})()"""


class Page:
    def __init__(self, socket):
        self.socket, self.next_id = socket, 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


def main(output: str, experiment: str = "1") -> None:
    url = f"{SERVER}/#/experiments/{experiment}/runs?compareRunsMode=CHART&searchFilter={urllib.parse.quote(FILTER)}"
    browser = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                "--remote-debugging-port=9333", f"--user-data-dir={tempfile.mkdtemp()}",
                                "--window-size=1500,1250", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try:
                targets = json.load(urllib.request.urlopen("http://127.0.0.1:9333/json"))
                break
            except OSError:
                time.sleep(0.5)
        page_target = next(t for t in targets if t["type"] == "page")
        with connect(page_target["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            page.call("Page.navigate", url=url)
            time.sleep(15)
            page.evaluate(CLOSE_ASSISTANT)
            if not page.evaluate(TYPE_SEARCH):
                raise SystemExit("the chart search box was not found: has the MLflow UI changed?")
            time.sleep(15)  # charts render
            shot = page.call("Page.captureScreenshot", format="png")
        with open(output, "wb") as file:
            file.write(base64.b64decode(shot["data"]))
        print(f"wrote {output}")
    finally:
        browser.terminate()


if __name__ == "__main__":
    main(*sys.argv[1:])
