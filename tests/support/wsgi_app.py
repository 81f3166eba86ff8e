"""A Flask app with the extension, served by gunicorn in the server tests."""

from __future__ import annotations

from flask import Flask

import sherlock_ai
from sherlock_ai.integrations.flask import Sherlock

app = Flask("gunicorn_app")
log = sherlock_ai.get_logger("app.gunicorn")


@app.get("/items/<int:item_id>")
def read_item(item_id: int):
    log.info("item %d", item_id)
    return {"item_id": item_id, "id": sherlock_ai.get_request_id()}


Sherlock(app, trust_incoming_id=True)
