"""Headless Chromium driven over the DevTools protocol through a pipe (no port, no websocket library)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--window-size=1400,1000",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium could not be found, started, or answered a command wrongly or too late."""


def find_chromium() -> str:
    """Path of a Chromium binary ($CHROMIUM first); raise naming the set-up step when there is none."""
    for name in (os.environ.get("CHROMIUM"), *CANDIDATES):
        path = shutil.which(name) if name else None
        if path:
            return str(path)
    raise BrowserError(
        "no chromium binary found; run `bash scripts/setup.sh drill` (apt-get install chromium) "
        "or set CHROMIUM=/path/to/chromium"
    )


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager so it is always stopped."""

    def __init__(self, binary: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.binary = binary or find_chromium()
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: str | None = None
        self._to_chrome = self._from_chrome = -1
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self._stderr: IO[bytes] | None = None

    def __enter__(self) -> Browser:
        """Start the browser."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the browser, remove its profile and close the pipes."""
        self.close()

    def start(self) -> None:
        """Launch Chromium with --remote-debugging-pipe: it reads commands on fd 3 and answers on fd 4."""
        self._profile = tempfile.mkdtemp(prefix="dr-chromium-")
        chrome_in, self._to_chrome = os.pipe()
        self._from_chrome, chrome_out = os.pipe()

        def wire_pipes() -> None:
            # Move both ends above 10 first, so that putting one on fd 3 cannot clobber the other.
            high_in, high_out = (
                fcntl.fcntl(chrome_in, fcntl.F_DUPFD, 10),
                fcntl.fcntl(chrome_out, fcntl.F_DUPFD, 10),
            )
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        try:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={self._profile}",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=(3, 4),
                preexec_fn=wire_pipes,
                start_new_session=True,
            )
        except BaseException:
            self.close()
            raise
        finally:
            os.close(chrome_in)
            os.close(chrome_out)

    def close(self) -> None:
        """Ask the browser to close, kill it if it does not, and clean up; safe to call twice."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                try:
                    self._send("Browser.close", {}, None)
                    proc.wait(timeout=5)
                except (BrowserError, OSError, subprocess.TimeoutExpired):
                    pass
                if proc.poll() is None:
                    os.killpg(proc.pid, 9)
                    proc.wait(timeout=10)
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                if fd >= 0:
                    os.close(fd)
            self._to_chrome = self._from_chrome = -1
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            if self._profile:
                shutil.rmtree(self._profile, ignore_errors=True)
                self._profile = None

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of Chromium's stderr, for error messages."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        data: bytes = self._stderr.read()
        return data.decode("utf-8", "replace")[-chars:]

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        """Write one command to the pipe; return its id."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_chrome, data)
            data = data[written:]
        return self._next_id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        """Read the next NUL-terminated message from the browser."""
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the DevTools pipe; stderr: {self.stderr_tail()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(raw))

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send a command and wait for its result; protocol errors raise BrowserError."""
        if self._proc is None:
            raise BrowserError("browser is not running")
        wanted = self._send(method, params or {}, session)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self.events.append(message)

    def new_page(self, width: int = 1400, height: int = 1000) -> Page:
        """Open a blank tab and attach to it."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page


class Page:
    """One tab: navigate, evaluate, wait for a condition, take a screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A command in this tab's session."""
        return self.browser.call(method, params, self.session)

    def navigate(self, url: str) -> None:
        """Load a URL (a hash change on the same document is fine too)."""
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript (promises awaited) and return its JSON value."""
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')}: {expression[:120]}")
        return result.get("result", {}).get("value")

    def wait_for(
        self, expression: str, *, what: str, timeout_s: float = 20.0, interval_s: float = 0.2
    ) -> Any:
        """Poll a JavaScript expression until it is truthy; time out naming what was awaited."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            last = self.evaluate(expression)
            if last:
                return last
            time.sleep(interval_s)
        raise BrowserError(f"timed out after {timeout_s:.0f} s waiting for {what} (last value {last!r})")

    def screenshot(self, path: str | Path, *, full_page: bool = False) -> Path:
        """Save a PNG screenshot of the tab."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out
