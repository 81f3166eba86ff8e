"""A FastAPI app that sets up sherlock_ai's logging when imported, as an app run by a server's
command line does (``uvicorn served_fastapi_app:app``, gunicorn with uvicorn workers).
Logs go to ``logs/`` in the working directory."""

from __future__ import annotations

from fastapi import FastAPI

import sherlock_ai
from sherlock_ai.integrations.asgi import instrument_app

sherlock_ai.sherlock_ai()
log = sherlock_ai.get_logger("app.served")

api = FastAPI()


@api.get("/items/{item_id}")
async def read_item(item_id: int):
    log.info("item %d", item_id)
    return {"item_id": item_id}


app = instrument_app(api, trust_incoming_id=True)  # the tests play a proxy that sets ids
