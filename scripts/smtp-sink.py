#!/usr/bin/env python3
"""SMTP sink for Magnetar's tests, with fault injection.

The SMTP server accepts plain SMTP (no TLS) and stores every accepted message
as an .eml file in an inbox folder. It prepends the envelope as a
`Return-Path` header (sender) and an `X-Original-To` header (recipients,
comma-separated), as a delivering MTA does, because the envelope can differ
from the From/To/Bcc headers.

AUTH PLAIN and AUTH LOGIN are offered without TLS and accept any credentials,
so clients that always log in work. Clients that skip AUTH work as well.

A small HTTP control server (JSON) sets the fault mode and reads the inbox:

    GET    /mode            current fault mode
    PUT    /mode            set it: {"mode": M, "stage": S, "reason": R, "times": N}
                            (POST works too, as do query parameters such as
                            /mode?mode=tempfail&stage=data in place of a body)
    GET    /messages        list of {"id", "from", "to", "subject", "size", "received_at"}
    GET    /messages/count  {"count": N}
    GET    /messages/ID     the stored .eml file
    DELETE /messages        delete all stored messages, returns {"deleted": N}

Modes:
    accept    store the message and reply 250 (default)
    tempfail  reply 451 at the RCPT stage (default) or after DATA
    permfail  reply 550 with a reason text at the RCPT stage (default) or after DATA
    drop      close the connection without a reply as soon as MAIL FROM arrives

`stage` is "rcpt" or "data" and applies to tempfail and permfail. `reason`
replaces the default reply text. `times`, when given, limits the fault to the
next N mail transactions (MAIL FROM commands), after which the mode returns to
accept, so a test can check that a client retries after a temporary failure.

Run `smtp-sink.py --help` for the ports and the inbox path.
"""

import argparse
import datetime
import email.parser
import email.policy
import http.server
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

log = logging.getLogger("smtp-sink")

MODES = ("accept", "tempfail", "permfail", "drop")
STAGES = ("rcpt", "data")
DEFAULT_REASONS = {
    "tempfail": "4.3.0 Temporary failure injected by smtp-sink",
    "permfail": "5.7.1 Rejected by smtp-sink fault injection",
}
REPLY_CODES = {"tempfail": 451, "permfail": 550}


class FaultConfig:
    """Fault mode shared by the SMTP thread and the HTTP control thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._mode = "accept"
        self._stage = "rcpt"
        self._reason = None
        self._times = None  # None means "until changed".

    def describe(self):
        with self._lock:
            return self._describe_locked()

    def _describe_locked(self):
        return {
            "mode": self._mode,
            "stage": self._stage,
            "reason": self._reason,
            "times": self._times,
        }

    def update(self, mode, stage=None, reason=None, times=None):
        """Validate and set a new fault mode. Raise ValueError on invalid input."""
        if mode not in MODES:
            raise ValueError(f"invalid mode {mode!r}, expected one of {', '.join(MODES)}")
        stage = stage or "rcpt"
        if stage not in STAGES:
            raise ValueError(f"invalid stage {stage!r}, expected one of {', '.join(STAGES)}")
        if times is not None:
            try:
                times = int(times)
            except (TypeError, ValueError):
                raise ValueError(f"invalid times {times!r}, expected a positive integer") from None
            if times < 1:
                raise ValueError(f"invalid times {times}, expected a positive integer")
        if reason is not None and ("\r" in reason or "\n" in reason):
            raise ValueError("invalid reason: it must be a single line")

        with self._lock:
            self._mode = mode
            self._stage = stage
            self._reason = reason
            self._times = times
            described = self._describe_locked()
        log.info("fault mode set to %s", described)
        return described

    def take_for_transaction(self):
        """Return the fault for a new mail transaction, counting it against `times`."""
        with self._lock:
            fault = self._describe_locked()
            if self._mode != "accept" and self._times is not None:
                self._times -= 1
                if self._times == 0:
                    log.info("fault mode %s reached its times limit, reverting to accept", self._mode)
                    self._mode = "accept"
                    self._stage = "rcpt"
                    self._reason = None
                    self._times = None
            return fault


class Inbox:
    """Folder of received messages, one .eml file each."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # Messages are written to tmp/ and renamed into place, as in Maildir,
        # so a reader never sees a half-written file.
        self.tmp_path = self.path / "tmp"
        self.tmp_path.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._sequence = itertools.count(1)

    def store(self, mail_from, rcpt_tos, content):
        """Write one message with its envelope headers and return its id."""
        envelope_headers = (
            f"Return-Path: <{mail_from}>\r\n"
            f"X-Original-To: {', '.join(rcpt_tos)}\r\n"
        ).encode("utf-8")
        # The timestamp makes ids sort in arrival order. The pid and sequence
        # number keep them unique when two messages arrive in the same microsecond.
        now = datetime.datetime.now(datetime.timezone.utc)
        message_id = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}-{next(self._sequence):06d}"
        with self._lock:
            with tempfile.NamedTemporaryFile(dir=self.tmp_path, delete=False) as file:
                file.write(envelope_headers)
                file.write(content)
            os.replace(file.name, self.path / f"{message_id}.eml")
        return message_id

    def message_path(self, message_id):
        """Return the path of a stored message, or None when the id is unknown or invalid."""
        if "/" in message_id or message_id.startswith("."):
            return None
        path = self.path / f"{message_id}.eml"
        return path if path.is_file() else None

    def list_messages(self):
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        summaries = []
        for path in sorted(self.path.glob("*.eml")):
            try:
                with path.open("rb") as file:
                    headers = parser.parse(file)
                stat = path.stat()
            except FileNotFoundError:
                continue  # Deleted by a concurrent DELETE /messages.
            # The envelope headers come first because store() prepends them,
            # so the first occurrence is ours even if the client sent its own.
            mail_from = str(headers.get("Return-Path", "")).strip().removeprefix("<").removesuffix(">")
            rcpt_tos = str(headers.get("X-Original-To", ""))
            # NOTE: splitting on ", " misreads a quoted local part that
            # contains ", ", which tests are unlikely to use.
            summaries.append({
                "id": path.stem,
                "from": mail_from,
                "to": [address for address in rcpt_tos.split(", ") if address],
                "subject": str(headers.get("Subject", "")),
                "size": stat.st_size,
                "received_at": datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc).isoformat(),
            })
        return summaries

    def delete_all(self):
        with self._lock:
            paths = list(self.path.glob("*.eml"))
            for path in paths:
                path.unlink(missing_ok=True)
        log.info("deleted %d stored messages", len(paths))
        return len(paths)


class SinkHandler:
    """aiosmtpd handler that applies the fault mode and stores accepted messages."""

    def __init__(self, faults, inbox):
        self.faults = faults
        self.inbox = inbox

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # The fault is chosen once per transaction, so `times` counts
        # transactions and a change of mode mid-transaction has no effect.
        fault = self.faults.take_for_transaction()
        envelope.fault = fault
        if fault["mode"] == "drop":
            log.info("dropping connection from %s after MAIL FROM:<%s>", session.peer, address)
            # abort() closes the socket at once without sending a reply.
            # aiosmtpd still tries to write the return value below, which
            # asyncio discards because the transport is closed.
            server.transport.abort()
            return "421 4.3.0 Connection dropped"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rejection = self._rejection(envelope, "rcpt")
        if rejection:
            log.info("rejecting RCPT TO:<%s> from %s: %s", address, session.peer, rejection)
            return rejection
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rejection = self._rejection(envelope, "data")
        if rejection:
            log.info("rejecting DATA from %s for %s: %s", session.peer, envelope.rcpt_tos, rejection)
            return rejection
        message_id = self.inbox.store(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
        log.info(
            "stored message %s from <%s> to %s (%d bytes)",
            message_id, envelope.mail_from, envelope.rcpt_tos, len(envelope.original_content),
        )
        return f"250 OK stored as {message_id}"

    @staticmethod
    def _rejection(envelope, stage):
        """Return the error reply for this stage, or None to accept."""
        fault = getattr(envelope, "fault", None)
        if not fault or fault["mode"] not in REPLY_CODES or fault["stage"] != stage:
            return None
        reason = fault["reason"] or DEFAULT_REASONS[fault["mode"]]
        return f"{REPLY_CODES[fault['mode']]} {reason}"


def accept_any_credentials(server, session, envelope, mechanism, auth_data):
    """Accept every AUTH attempt, because the sink only records what clients send."""
    log.info("accepted AUTH %s from %s", mechanism, session.peer)
    return AuthResult(success=True)


def make_control_handler(faults, inbox):
    """Build the HTTP request handler class bound to the shared state."""

    class ControlHandler(http.server.BaseHTTPRequestHandler):
        server_version = "smtp-sink-control"

        def log_message(self, format, *args):
            log.info("control %s - %s", self.address_string(), format % args)

        def send_json(self, status, body):
            data = json.dumps(body, indent=2).encode("utf-8") + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def send_not_found(self, path):
            self.send_json(404, {"error": f"not found: {path}"})

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path.rstrip("/")
            if path == "/mode":
                self.send_json(200, faults.describe())
            elif path == "/messages":
                self.send_json(200, inbox.list_messages())
            elif path == "/messages/count":
                self.send_json(200, {"count": len(inbox.list_messages())})
            elif path.startswith("/messages/"):
                self.send_message_file(path, path.removeprefix("/messages/"))
            else:
                self.send_not_found(path)

        def send_message_file(self, path, message_id):
            message_path = inbox.message_path(message_id)
            if message_path is None:
                self.send_not_found(path)
                return
            data = message_path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "message/rfc822")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path.rstrip("/") != "/mode":
                self.send_not_found(url.path)
                return
            try:
                settings = self.read_mode_settings(url.query)
                described = faults.update(
                    settings.get("mode"),
                    stage=settings.get("stage"),
                    reason=settings.get("reason"),
                    times=settings.get("times"),
                )
            except ValueError as error:
                log.warning("rejected fault mode change %s: %s", self.path, error)
                self.send_json(400, {"error": str(error)})
                return
            self.send_json(200, described)

        do_POST = do_PUT

        def read_mode_settings(self, query):
            """Read the settings from the JSON body, or from the query string when there is no body."""
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                try:
                    settings = json.loads(self.rfile.read(length))
                except json.JSONDecodeError as error:
                    raise ValueError(f"invalid JSON body: {error}") from None
                if not isinstance(settings, dict):
                    raise ValueError("invalid JSON body: expected an object")
                return settings
            return {key: values[-1] for key, values in urllib.parse.parse_qs(query).items()}

        def do_DELETE(self):
            path = urllib.parse.urlsplit(self.path).path.rstrip("/")
            if path != "/messages":
                self.send_not_found(path)
                return
            self.send_json(200, {"deleted": inbox.delete_all()})

    return ControlHandler


def parse_arguments():
    script_dir = Path(__file__).resolve().parent
    default_inbox = os.environ.get("MAGNETAR_SMTP_INBOX") or str(
        Path(os.environ.get("MAGNETAR_CACHE") or script_dir.parent / ".cache" / "services") / "smtp" / "inbox"
    )
    parser = argparse.ArgumentParser(description="SMTP sink with fault injection for Magnetar's tests.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("MAGNETAR_SMTP_PORT", 2525)),
        help="SMTP port (default: $MAGNETAR_SMTP_PORT or 2525)",
    )
    parser.add_argument(
        "--control-port", type=int, default=int(os.environ.get("MAGNETAR_SMTP_CONTROL_PORT", 2526)),
        help="HTTP control port (default: $MAGNETAR_SMTP_CONTROL_PORT or 2526)",
    )
    parser.add_argument(
        "--inbox", default=default_inbox,
        help="folder for received .eml files (default: $MAGNETAR_SMTP_INBOX or "
        "$MAGNETAR_CACHE/smtp/inbox, where MAGNETAR_CACHE defaults to .cache/services in the repository)",
    )
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    faults = FaultConfig()
    inbox = Inbox(arguments.inbox)
    controller = Controller(
        SinkHandler(faults, inbox),
        hostname=arguments.host,
        port=arguments.port,
        authenticator=accept_any_credentials,
        auth_require_tls=False,
        # Accept any message size a test may send; 0 disables the limit.
        data_size_limit=0,
    )
    control_server = http.server.ThreadingHTTPServer(
        (arguments.host, arguments.control_port), make_control_handler(faults, inbox)
    )

    # SIGTERM (sent by `scripts/services stop`) ends serve_forever() through
    # SystemExit, so the finally block below shuts both servers down.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    controller.start()
    log.info(
        "started: SMTP on %s:%d, control HTTP on %s:%d, inbox %s",
        arguments.host, arguments.port, arguments.host, arguments.control_port, inbox.path,
    )
    try:
        control_server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        control_server.server_close()
        controller.stop()
        log.info("stopped")


if __name__ == "__main__":
    main()
