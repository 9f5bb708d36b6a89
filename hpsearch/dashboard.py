"""optuna-dashboard over a study storage, with hpsearch's artifact store wired in.

`wsgiref` (the standard library's server) is the default; `gunicorn` serves several users at once.
No torch or transformers import: the dashboard starts in a second.
"""

from __future__ import annotations

import optuna_dashboard
from optuna.artifacts import FileSystemArtifactStore

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def make_app(storage, artifact_store: FileSystemArtifactStore):
    return optuna_dashboard.wsgi(storage, artifact_store=artifact_store)


def serve(app, host: str, port: int, server: str, workers: int = 4) -> None:
    if server == "gunicorn":
        _serve_gunicorn(app, host, port, workers)
        return
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # one line per request would bury the console
            pass

    with make_server(host, port, app, handler_class=QuietHandler) as httpd:
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
