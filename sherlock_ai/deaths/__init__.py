"""Last words: which requests a worker was serving when it died, and how its memory got there.

Each recording process keeps a flight record (:mod:`.record`: a small file mapped into memory)
of its requests in flight and its recent RSS readings, written by the engine's request API
with stores into the mapping (:mod:`.recorder`). When a process ends without closing its
record, whoever learns of it first tells it once (:mod:`.telling`): gunicorn's arbiter through
:mod:`sherlock_ai.integrations.gunicorn_hooks`, else a sibling's watcher (:mod:`.watch`), else
``sherlock-ai report``. Modules are imported by what uses them: the engine imports only the
recorder.
"""
