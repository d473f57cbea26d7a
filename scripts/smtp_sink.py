#!/usr/bin/env python3
"""A local SMTP sink (aiosmtpd) for tests and the demo.

Every message it accepts is written to DIR as NNNNNN.eml, with NNNNNN.json
beside it (to, from, subject, and the decoded text and HTML parts, parsed by
Python's email package rather than by the code under test). The JSON is
written last, through a temporary name, so a reader that sees it sees both.
Prints "READY <port>" once it listens.

    smtp_sink.py DIR [--port N] [--exit-on-stdin-eof]
"""
import argparse
import email
import email.policy
import itertools
import json
import os
import signal
import socket
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            n = next(self.counter)
        raw = envelope.original_content or envelope.content
        base = os.path.join(self.directory, f"{n:06d}")
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)

        def part(kind):
            body = msg.get_body(preferencelist=(kind,))
            return body.get_content() if body is not None else None

        summary = {
            "envelope_from": envelope.mail_from,
            "envelope_to": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "text": part("plain"),
            "html": part("html"),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(summary, f)
        os.rename(base + ".json.tmp", base + ".json")
        print(f"mail {n:06d} from {envelope.mail_from} to {','.join(envelope.rcpt_tos)}", flush=True)
        return "250 Message accepted for delivery"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when stdin closes (a test harness that died)")
    args = parser.parse_args()
    os.makedirs(args.directory, exist_ok=True)
    port = args.port or free_port()
    controller = Controller(Sink(args.directory), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"READY {port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if args.exit_on_stdin_eof:
            threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
