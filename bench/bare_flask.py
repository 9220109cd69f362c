"""The baseline for bench/ingest.py: a bare Flask app that only parses the JSON body.

gunicorn -c deploy/gunicorn.conf.py --chdir bench bare_flask:app
"""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask("bare")


@app.post("/webhooks/<provider>/<track_id>")
def receive(provider: str, track_id: str):  # type: ignore[no-untyped-def]
    body = request.get_json(force=True)
    if not isinstance(body, dict):
        return jsonify({"error": "not an object"}), 400
    return jsonify({"status": "accepted"}), 200


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})
