"""A Flask app that sets up sherlock_ai's logging when imported, as an app run by a server's
command line does (``flask --app served_flask_app run``, gunicorn's sync workers). Logs go
to ``logs/`` in the working directory."""

from __future__ import annotations

from flask import Flask

import sherlock_ai
from sherlock_ai.integrations.flask import Sherlock

sherlock_ai.sherlock_ai()
log = sherlock_ai.get_logger("app.served")

app = Flask("served_flask_app")


@app.get("/items/<int:item_id>")
def read_item(item_id: int):
    log.info("item %d", item_id)
    return {"item_id": item_id}


@app.get("/missing")
def missing():
    return "gone", 404


Sherlock(app, trust_incoming_id=True)  # the tests play a proxy that sets ids
