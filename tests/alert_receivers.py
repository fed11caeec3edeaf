"""Real receivers of alerts on 127.0.0.1: an HTTP server taking Apprise's json:// posts, and an SMTP
server (aiosmtpd) taking its mailto:// e-mails. Each records what arrived, parsed."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import free_port


class JsonReceiver:
    """Apprise's json:// channel POSTs {"title", "message", "type", ...}; answers `status`."""

    def __init__(self, status: int = 200, port: int = 0) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.status < 300:
                    receiver.posts.append((self.path, json.loads(raw or b"{}")))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def messages(self) -> list[str]:
        return [body.get("message", "") for _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping each message, parsed."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.raw: list[bytes] = []
        self.recipients: list[list[str]] = []  # each message's envelope (RCPT TO), where a Bcc would show
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
                receiver.raw.append(envelope.content)
                receiver.recipients.append(list(envelope.rcpt_tos))
                receiver.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=scheduler@example.com&to={to}&mode=insecure"

    def close(self) -> None:
        self.controller.stop()


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    """An Apprise configuration file as a secret: this user's, not readable by others."""
    path.write_text(text)
    path.chmod(mode)
    return path
