"""The one progress line on stderr, rewritten in place."""

import sys
import time


class Progress:
    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.label = ""
        self.started = time.monotonic()
        self.last_width = 0
        self.interactive = stream.isatty()
        self.last_plain = 0.0

    def stage(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self._write(label, force=True)

    def update(self, done: int, total: int = 0) -> None:
        elapsed = time.monotonic() - self.started
        amount = f"{done:,}/{total:,}" if total else f"{done:,}"
        self._write(f"{self.label}: {amount} ({elapsed:.1f} s)")

    def _write(self, text: str, force: bool = False) -> None:
        if self.interactive:
            pad = " " * max(0, self.last_width - len(text))
            self.stream.write(f"\r{text}{pad}")
            self.last_width = len(text)
        elif force or time.monotonic() - self.last_plain > 5:
            # Logs and CI: a line now and then instead of carriage returns.
            self.stream.write(text + "\n")
            self.last_plain = time.monotonic()
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive and self.last_width:
            self.stream.write("\r" + " " * self.last_width + "\r")
            self.stream.flush()
