"""The ceiling: a hello-world Flask app run under the service's own gunicorn configuration.

It parses a JSON body and answers JSON, like the service's routes, so the ratio to it measures
what the service itself costs on top of Flask, gunicorn and the access log.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/hello")
def hello() -> Response:
    """Echo the length of the body's ``phone``: JSON in, JSON out, no I/O."""
    body = request.get_json(silent=True) or {}
    return jsonify(status="ok", length=len(str(body.get("phone", ""))))
