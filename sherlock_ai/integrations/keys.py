"""Where the integrations leave what they know in the ASGI scope and the WSGI environ, and
where a WSGI framework leaves what the middleware needs (the Flask extension does)."""

#: The request id, in the ASGI scope and the WSGI environ.
REQUEST_ID_KEY = "sherlock_ai.request_id"
#: Where a WSGI framework puts the matched route template.
ROUTE_KEY = "sherlock_ai.route"
#: Where a WSGI framework puts the exception it turned into a 5xx response, or its log-safe
#: summary (``exception_summary``): the Flask extension puts the summary, since the exception's
#: traceback would keep a response body alive.
ERROR_KEY = "sherlock_ai.error"
#: Where a WSGI framework puts the function that served the request (for the leak watch).
ENDPOINT_KEY = "sherlock_ai.endpoint"
#: ``False`` where a WSGI framework reports that the response body it returned was produced in
#: full: the measurement then ends when the application returns.
STREAMED_KEY = "sherlock_ai.streamed"
