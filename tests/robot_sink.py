"""A local stand-in for the ops group robot (WeCom/DingTalk group bot webhook): records every
post and answers `{"errcode": errcode}` as the vendors do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RobotSink:
    def __init__(self, errcode: int = 0):
        self.posts: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["content-length"])
                sink.posts.append(json.loads(self.rfile.read(length)))
                body = json.dumps({"errcode": errcode, "errmsg": "ok"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/cgi-bin/webhook/send?key=test"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> str:
        return "\n".join(json.dumps(post, ensure_ascii=False) for post in self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
