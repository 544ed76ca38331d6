"""An SMTP sink for benchmarks: accepts every message, optionally after a delay, and logs it.

    python bench/smtp_sink.py --port 2525 [--delay 2.0] --log received.log

Every message waits --delay seconds (asyncio.sleep, so many sessions can wait at once) before
the sink answers 250, as a slow mail server would; then one line `<time.time()> <recipient>`
is appended to --log. SIGTERM or Ctrl-C stops it. Run by bench/harness.py's running_smtp_sink.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, delay: float, log_path: str) -> None:
        self.delay = delay
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the sink's life; line-buffered: readers see whole lines)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        stamp = time.time()
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.log.write(f"{stamp:.6f} {recipient}\n")
        return "250 Message accepted for delivery"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250 (default 0)")
    parser.add_argument("--log", required=True, help="file to append `<time> <recipient>` lines to")
    args = parser.parse_args()

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    controller = Controller(Sink(args.delay, args.log), hostname=args.host, port=args.port)
    controller.start()
    print(f"listening on {args.host}:{args.port}", flush=True)
    try:
        stop.wait()
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
