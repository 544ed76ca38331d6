"""An SMTP sink for benchmarks: accepts every message, optionally after a delay, and logs it.

    python bench/smtp_sink.py --port 2525 [--delay 2.0] --log received.log
    python bench/smtp_sink.py --port 2525 --lean --processes 2 --log received.log
    python bench/smtp_sink.py --port 2525 --no-pipelining --log received.log

Every message waits --delay seconds (asyncio.sleep, so many sessions can wait at once) before
the sink answers 250, as a slow mail server would; then one line `<time.time()> <recipient>`
is appended to --log. SIGTERM or Ctrl-C stops it. Run by bench/harness.py's running_smtp_sink.

By default the server is aiosmtpd's. `--lean` serves the same conversation (EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT; 8BITMIME advertised) from a small asyncio protocol
of its own, several times cheaper per message than aiosmtpd's command parsing: a sink that can
outrun the senders it measures. `--processes N` (lean only) runs N such servers on the same port
(SO_REUSEPORT; the kernel spreads connections over them), process i logging to `--log` with
`.i` appended for i > 0; each process creates its log file once it listens.

Both offer PIPELINING (RFC 2920), as the mail servers a shop relays through do; both read
commands a line at a time, so a client that pipelines is answered in order. `--no-pipelining`
leaves it out of EHLO's answer, for the one-command-at-a-time conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

END_OF_DATA = b"\r\n.\r\n"
ACCEPTED = b"250 Message accepted for delivery\r\n"


class Sink:
    """aiosmtpd's handler."""

    def __init__(self, delay: float, log_path: str, pipelining: bool = True) -> None:
        self.delay = delay
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the sink's life; line-buffered)
        self.lock = threading.Lock()
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        stamp = time.time()
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.log.write(f"{stamp:.6f} {recipient}\n")
        return "250 Message accepted for delivery"


class LeanSmtp(asyncio.Protocol):
    """One SMTP session, as little work per message as the protocol allows."""

    def __init__(self, delay: float, log, pipelining: bool = True) -> None:
        self.delay = delay
        self.log = log
        self.greeting = b"250-sink\r\n250-8BITMIME\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 SIZE 33554432\r\n"
        self.buffer = b""
        self.in_data = False
        self.recipients: list[str] = []
        self.transport: asyncio.Transport | None = None
        # The answers to what one read brought, written together once it is handled: answered
        # one write each, a pipelined MAIL, RCPT and DATA waited out the client's delayed ACK
        # (40 ms) behind Nagle's algorithm. RFC 2920 asks a server to answer a group as a unit.
        self.answers: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._handle_buffer()
        finally:
            if self.answers:
                answers, self.answers = b"".join(self.answers), []
                if self.transport is not None:
                    self.transport.write(answers)

    def _handle_buffer(self) -> None:
        while self.transport is not None:
            if self.in_data:
                # The body ends at CRLF.CRLF; right after DATA an empty body is just ".\r\n".
                if self.buffer.startswith(b".\r\n"):
                    end, rest = 0, 3
                else:
                    end = self.buffer.find(END_OF_DATA)
                    if end < 0:
                        # Keep the tail: the terminator may be split across reads.
                        return
                    rest = end + len(END_OF_DATA)
                self.buffer = self.buffer[rest:]
                self.in_data = False
                recipients, self.recipients = self.recipients, []
                if self.delay > 0:
                    asyncio.get_running_loop().call_later(self.delay, self._accepted, recipients)
                else:
                    self._log(recipients)
                    self.answers.append(ACCEPTED)
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2:]
            self._command(line)

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        write = self.answers.append
        if verb == b"EHLO":
            write(self.greeting)
        elif verb == b"MAIL":
            self.recipients = []
            write(b"250 OK\r\n")
        elif verb == b"RCPT":
            address = line.partition(b":")[2].strip().split(b" ")[0].strip(b"<>")
            self.recipients.append(address.decode("utf-8", "replace"))
            write(b"250 OK\r\n")
        elif verb == b"DATA":
            self.in_data = True
            write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            write(b"221 Bye\r\n")
            self.transport.write(b"".join(self.answers))
            self.answers = []
            self.transport.close()
            self.transport = None
        elif verb in (b"HELO", b"RSET", b"NOOP"):
            self.recipients = [] if verb == b"RSET" else self.recipients
            write(b"250 OK\r\n")
        else:
            write(b"502 Command not implemented\r\n")

    def _log(self, recipients: list[str]) -> None:
        stamp = time.time()
        self.log.write("".join(f"{stamp:.6f} {recipient}\n" for recipient in recipients))

    def _accepted(self, recipients: list[str]) -> None:
        """A delayed answer, once its delay is over."""
        self._log(recipients)
        if self.transport is not None:
            self.transport.write(ACCEPTED)

    def connection_lost(self, exc) -> None:
        self.transport = None


def serve_lean(host: str, port: int, delay: float, log_path: str, pipelining: bool = True) -> None:
    """Serve until SIGTERM or SIGINT, sharing the port with any sibling processes."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        with open(log_path + ".tmp", "a", buffering=1) as log:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            server = await loop.create_server(lambda: LeanSmtp(delay, log, pipelining), sock=listener, backlog=512)
            os.replace(log_path + ".tmp", log_path)  # the log's existence says: listening
            async with server:
                await stop.wait()

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250 (default 0)")
    parser.add_argument("--log", required=True, help="file to append `<time> <recipient>` lines to")
    parser.add_argument("--lean", action="store_true", help="the small asyncio server instead of aiosmtpd's")
    parser.add_argument("--processes", type=int, default=1, help="lean servers sharing the port (default 1)")
    parser.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    args = parser.parse_args()

    if args.lean:
        siblings = [
            subprocess.Popen([sys.executable, __file__, "--host", args.host, "--port", str(args.port),
                              "--delay", str(args.delay), "--log", f"{args.log}.{number}", "--lean",
                              *(["--no-pipelining"] if args.no_pipelining else [])])
            for number in range(1, args.processes)
        ]
        try:
            serve_lean(args.host, args.port, args.delay, args.log, not args.no_pipelining)
        finally:
            for sibling in siblings:
                sibling.send_signal(signal.SIGTERM)
            for sibling in siblings:
                sibling.wait(10)
        return 0

    from aiosmtpd.controller import Controller

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    controller = Controller(Sink(args.delay, args.log, not args.no_pipelining), hostname=args.host, port=args.port)
    controller.start()
    Path(args.log).touch()
    print(f"listening on {args.host}:{args.port}", flush=True)
    try:
        stop.wait()
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
