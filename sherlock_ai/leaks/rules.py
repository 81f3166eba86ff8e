"""The leak watch's fixed rules: every tuning constant, each with the rule it enforces.

The settings a user may change are :class:`.settings.LeakWatchSettings`; these are not
settings. Why each value is what it is (the runs that chose it) is told in
docs/leak-detection.md, "How it works" and "When it can be wrong".
"""

# -- routes ---------------------------------------------------------------------------------

#: Requests of routes beyond ``max_routes`` are counted under this key: they take part in
#: the fits (their growth is not pinned on another route) but the key is never reported.
OVERFLOW_ROUTE = "OTHER <more routes>"
#: Route id 0 is the column of requests in flight that started under tracing (what they
#: hold until they end rises and falls with it); it is fitted but never blamed.
IN_FLIGHT_ID = 0
#: The name of :data:`IN_FLIGHT_ID` in the route table.
IN_FLIGHT_NAME = "<requests in flight>"
#: Route id 1 is the column of threads alive that started under tracing: a server that serves
#: each request on a new thread (werkzeug's threaded server) holds that thread's socket,
#: buffers and handler before the request starts and after it ends; fitted, never blamed.
THREADS_ID = 1
#: The name of :data:`THREADS_ID` in the route table.
THREADS_NAME = "<threads started while tracing>"
#: Route id 2 is the column of connections kept alive that served a request since the window
#: opened (see ``LeakWatch._count_reused_connections``): a keep-alive connection holds its
#: last request's headers and scope until its next request, so an idle connection holds an
#: untraced request when a window opens and a traced one from its first request under
#: tracing on; fitted, never blamed.
CONNECTIONS_ID = 2
#: The name of :data:`CONNECTIONS_ID` in the route table.
CONNECTIONS_NAME = "<connections kept alive, served while tracing>"
#: The ids of those three levels: fitted like routes, never blamed.
LEVEL_IDS = (IN_FLIGHT_ID, THREADS_ID, CONNECTIONS_ID)

# -- the schedule ---------------------------------------------------------------------------

#: A candidate is confirmed by at most this many windows in a row before the schedule resumes.
MAX_CONFIRMING_WINDOWS = 3
#: The late counts of a point are read this fraction of ``snapshot_every`` after it (1/3).
LATE_SHARE = 3
#: Windows at the suspect share after a change of the flags, in units of evidence_windows.
SUSPECT_WINDOWS = 1
#: Windows after the first that come at the suspect share (a leak from the start is common).
STARTUP_WINDOWS = 2
#: The smallest RSS growth within a pause (beyond what flagged suspects explain) that calls
#: a window early.
EARLY_BYTES = 1 << 20
#: A connection that served a request in one of this many windows before is known to be
#: kept alive at its first request in the next (a client without keep-alive never comes back
#: on the same port so soon); the keys of those windows are kept.
CONNECTION_WINDOWS = 4
#: Frames per allocation while a confirming window traces (when it starts tracemalloc): the
#: endpoint's frame on the stack, not the timing of the counts, names the route of growth.
CONFIRM_FRAMES = 8
#: Requests a window's first point waits at most for the requests in flight at its opening.
SETTLE_REQUESTS = 1_000

# -- pauses -----------------------------------------------------------------------------------

#: Seconds of work (process-wide clock, ``time.perf_counter``) one ``request_finished`` call
#: spends at most on grouping and fitting before it leaves the rest to the next call; the
#: step running when the budget runs out finishes first.
CALL_BUDGET_S = 0.010
#: Traces grouped between two looks at the clock (a few milliseconds at most).
TRACES_PER_STEP = 2_000
#: Traced blocks a snapshot may hold: it copies every one in one call that cannot be split
#: (0.3 to 0.5 µs each: about 40 ms at this count). Windows end before it; a window does not
#: open while tracemalloc (started by someone else) already traces more than half of it.
SNAPSHOT_BLOCKS = 100_000
#: tracemalloc's own memory per traced block (53 bytes on CPython 3.11, measured): its
#: growth, cheap to read, estimates the traced blocks (rounded down, so over-counted).
TRACE_BYTES_PER_BLOCK = 48

# -- the fit ----------------------------------------------------------------------------------

#: Routes fitted on one site at most (more are screened by correlation with its growth).
MAX_CANDIDATES = 16
#: A route stays in the fit while its slope stands this many standard errors out of the noise.
KEEP_T = 4.0
#: Routes dropped from the fit that together reduce the residual this much (an F statistic)
#: stay in: the growth is spread over routes the counts cannot tell apart.
JOINT_F = 4.0
#: Count series this correlated belong to routes served together: not split by a guess.
TWIN_CORRELATION = 0.999
#: The routes kept must fit this much better (an F statistic) than the growth spread evenly
#: over the routes that could share it, or nothing is pinned on them.
EVEN_F = 4.0
#: How many standard errors below its pooled slope a route's slope in the latest window may
#: fall where the growth spread over every candidate is below the floor (a leak is steady).
STEADY_SE = 2.0
#: How far the late counts weigh in: the counts at the snapshot, or their mean with them.
LATE_WEIGHTS = (0.0, 0.5)
#: Rounds of clipping a site's steps that no route's counts explain.
CLIP_ROUNDS = 6
#: A step is clipped beyond this many robust deviations from the slopes' prediction.
CLIP_DEVIATIONS = 3.0
#: A normal distribution's standard deviation per median absolute deviation.
MAD_SCALE = 1.4826
#: The robust deviation of a traced site's steps is at least this many bytes, so that a
#: site the slopes fit to a few bytes does not have every small misfit clipped.
SPREAD_FLOOR = 256.0
#: Sweeps of the non-negative least-squares solver at most.
NNLS_SWEEPS = 200

# -- the criteria ---------------------------------------------------------------------------

#: How far a slope must stand out of the noise (slope / its standard error) to flag.
MIN_T = 8.0
#: Share of a site's changes between consecutive points that must be rises.
MIN_RISE_SHARE = 0.8
#: The latest windows must have grown by at least this share of what the slope predicts.
MIN_LATEST_SHARE = 0.5
#: The route's slope in the latest window alone must stand this far out of the noise.
MIN_LATEST_T = 2.0
#: Bytes a route's requests inside the pooled windows must have kept at its rate: a bounded
#: cache that fills, and a fill that restarts with every window, hold less.
MIN_RETAINED = 64 * 1024
#: A site that gained at least this many bytes since a window's first point and then fell,
#: in one step, to less than this share of that gain gives its memory back: none of its
#: routes is named while that window is among those kept (see :func:`.series.released`).
#: (Small: a thread's objects, reaped in batches, are a few hundred bytes a request.)
RELEASE_BYTES = 2048
RELEASE_SHARE = 0.5
#: A holding window (the confirming window of growth that follows every route alike: see
#: :class:`.fit.SiteFit`) spans at least this many requests: a queue that every request
#: feeds and something empties in batches of up to about as many requests' worth
#: (OpenTelemetry's batch span processor exports 512 spans at a time) gives back within it.
HOLD_REQUESTS = 600
#: A candidate (worth a confirming window) needs this fraction of the requests and kept
#: bytes the flag needs ...
CANDIDATE_SHARE = 0.25
#: ... and this fraction of its t-values.
CANDIDATE_T_SHARE = 0.5

# -- the evidence -------------------------------------------------------------------------------

#: Sites kept in the evidence at most (the least recently grown are dropped first).
KEYS_LIMIT = 10_000
#: Windows kept per pooled window: a route with little traffic pools up to this many times
#: ``evidence_windows``.
WINDOWS_KEPT = 8
#: Windows its traced blocks ended early count for the share of a planned window's requests
#: they span: up to this many times as many windows are kept then (a route whose every
#: request keeps tens of thousands of blocks has one request, or none, per window).
CUT_WINDOWS_KEPT = 8

# -- native suspects ------------------------------------------------------------------------

#: RSS readings per segment at most (a long pause is cut into several segments).
NATIVE_POINTS = 24
#: What the traced sites must leave unexplained of a route's RSS slope to call it native.
UNEXPLAINED_SHARE = 0.5
#: Rounds of the robust native fit.
NATIVE_ROUNDS = 3
#: The robust deviation of an RSS increment is at least a page.
PAGE = 4096

# -- suspects -----------------------------------------------------------------------------------

#: A suspect is logged again when its estimate moves by more than this share.
REPEAT_CHANGE = 0.25
#: Sites listed per suspect at most.
SITES_SHOWN = 5
#: Routes a "shared by" suspect names at most; more are "not attributable".
SHARED_NAMED = 3
#: A site this route explains less than this share of is shown with its share.
WHOLE_SHARE = 0.995
