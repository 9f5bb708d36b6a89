"""optuna-dashboard over a study storage, with hpsearch's artifact store wired in.

The default server is the standard library's wsgiref, one thread per request (the plain wsgiref
server answers one request at a time: one slow page or a browser's parallel fetches queue behind
it); `gunicorn` serves several users at once. No torch or transformers import: the dashboard starts
in a second.
"""

from __future__ import annotations

from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SERVERS = ("threaded", "gunicorn")


def make_app(storage, artifact_store):
    import optuna_dashboard

    return optuna_dashboard.wsgi(storage, artifact_store=artifact_store)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request still open does not keep Ctrl-C from stopping the server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would bury the console
        pass


def serve(app, host: str, port: int, server: str, workers: int = 4) -> None:
    if server == "gunicorn":
        _serve_gunicorn(app, host, port, workers)
        return
    with make_server(
        host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    ) as httpd:
        httpd.serve_forever()


def _serve_gunicorn(app, host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            # Threads, not processes: each request is short, and the storage engine is shared.
            self.cfg.set("workers", 1)
            self.cfg.set("threads", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)

        def load(self):
            return app

    Application().run()
