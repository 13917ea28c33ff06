"""`g4g study serve`: the rating web application (Flask; one static page and its script, no build step).

A rater enters through their personal link /join/<token>; the token goes into an HttpOnly, same-site
cookie and every later request is checked against it. The page asks /api/next for the rater's current
item and plays /media/<handle>; /api/rating records the three scores. Nothing the browser receives
names a method or a clip: handles are per rater and random (g4g.study.store), the video files were
re-encoded without metadata (g4g.study.build). Errors are JSON {"error": "..."} with the status that says
what happened: 401 no valid token, 400 bad scores, 404 unknown clip, 409 replay or out of order.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path

from flask import Flask, Response, jsonify, redirect, request, send_file
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import WSGIRequestHandler, make_server

from g4g.study.store import CRITERIA, RatingError, Study

log = logging.getLogger(__name__)

COOKIE = "g4g_study"
PAGE = Path(__file__).with_name("page.html")
SCRIPT = Path(__file__).with_name("page.js")
SIGN_IN = ("This study is by invitation: open the personal link you were given. If it no longer works, "
           "ask the organiser for a new one.")


def create_app(folder: str | Path, behind_proxy: bool = False) -> Flask:
    study = Study(folder)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4096  # a submission is a few dozen bytes
    if behind_proxy:  # the proxy's X-Forwarded-Proto: https makes the cookie Secure
        app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_for=1)

    def rater() -> int:
        r = study.rater_for(request.cookies.get(COOKIE))
        if r is None:
            raise RatingError(401, SIGN_IN)
        return r

    @app.errorhandler(RatingError)
    def refused(e: RatingError):
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        resp = jsonify(error=e.description)
        resp.headers.extend((k, v) for k, v in e.get_headers() if k.lower() != "content-type")  # Allow: ...
        return resp, e.code

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"  # ratings and progress are per person, never cached
        resp.headers["Referrer-Policy"] = "no-referrer"  # the join link never leaks to another site
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                   "frame-ancestors 'none'")
        return resp

    def refusal_page(message: str) -> Response:  # what a person opening a link in a browser reads
        return Response(f"<!doctype html><title>G4G user study</title><p>{message}</p>", 401, mimetype="text/html")

    @app.get("/join/<token>")
    def join(token: str):
        if study.rater_for(token) is None:
            return refusal_page("This link is not valid (mistyped, or replaced by a newer one). " + SIGN_IN)
        resp = redirect("/", code=303)
        resp.set_cookie(COOKIE, token, max_age=90 * 86400, httponly=True, samesite="Strict",
                        secure=request.is_secure)
        return resp

    @app.get("/")
    def page():
        if study.rater_for(request.cookies.get(COOKIE)) is None:
            return refusal_page(SIGN_IN)
        return send_file(PAGE, mimetype="text/html", max_age=0)

    @app.get("/page.js")
    def script():
        return send_file(SCRIPT, mimetype="text/javascript", max_age=0)

    @app.get("/api/next")
    def next_item():
        cur = study.current(rater())
        return jsonify(position=cur.position, total=cur.total, done=cur.handle is None, clip=cur.handle,
                       video=f"/media/{cur.handle}" if cur.handle else None, criteria=list(CRITERIA))

    @app.get("/media/<handle>")
    def media(handle: str):
        path = study.media_for(rater(), handle)
        if path is None:
            raise RatingError(404, f"unknown clip {handle!r}")
        resp = send_file(path, mimetype="video/mp4", conditional=True, etag=False, max_age=0)  # ranges: seeking
        del resp.headers["Last-Modified"]  # the files' times would tell the order they were made in
        return resp

    @app.post("/api/rating")
    def rate():
        r = rater()
        body = request.get_json(silent=True)
        cur = study.rate(r, body)
        log.info("rater %d rated %d of %d", r, cur.position - (cur.handle is not None), cur.total)
        return jsonify(ok=True, position=cur.position, total=cur.total, done=cur.handle is None)

    return app


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return host == "localhost"


class _RequestLog(WSGIRequestHandler):
    """Werkzeug's access log without the personal tokens of /join/<token> requests."""

    def log_request(self, code="-", size="-"):
        path = self.path
        self.path = re.sub(r"^/join/[^/?#]+", "/join/<token>", path)
        try:
            super().log_request(code, size)
        finally:
            self.path = path


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8050, behind_proxy: bool = False) -> None:
    """Serve until interrupted; prints the address first (port 0: a free one). Loopback unless `host`
    says otherwise: on a shared network, put it behind an HTTPS proxy and pass `behind_proxy` (the
    cookie is then Secure)."""
    app = create_app(folder, behind_proxy)
    if not _loopback(host):
        log.warning("listening on %s: anyone who can reach this port and holds a link can rate; links travel "
                    "in clear text unless an HTTPS proxy is in front", host)
    server = make_server(host, port, app, threaded=True, request_handler=_RequestLog)  # SQLite serialises writes
    url = f"http://{f'[{host}]' if ':' in host else host}:{server.port}/"
    print(f"serving the study in {folder} on {url} (links: g4g study invite --study {folder} --url URL, "
          f"URL the address raters reach); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
