"""Views of the test project: function views, a class-based view under ten URL patterns (one
keeps 4 KB per request), streaming, files, async, errors."""

import asyncio
import logging
import tempfile
import time

from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views import View

from resident import touched

logger = logging.getLogger("shop")
RETAINED = []
KEPT = []
LEAK_SIZE = 4096
SHELVES = "abcdefghij"
LEAKING_SHELF = "g"


def work(i: int) -> int:
    # Each view allocates and frees about as much as the leak, so size alone tells nothing.
    return len([str(n) * 4 for n in range(120 + i)])


def item(request, pk):
    logger.info("serving item %s", pk)
    return JsonResponse({"id": pk, "request_id": request.META["sherlock_ai.request_id"]})


def slow_item(request, pk):
    time.sleep(0.002)
    logger.info("serving item %s", pk)
    return JsonResponse({"id": pk})


def archive(request, year):
    return JsonResponse({"year": year})


def export(request):
    KEPT.append(touched(24 * 1024 * 1024))  # RSS grows by 24 MB: over a 10 MB budget
    return HttpResponse("kept")


def fail(request):
    return 1 / 0


def not_found(request):
    return HttpResponse("nothing here", status=404)


def stream(request):
    def chunks():
        for n in range(5):
            logger.info("chunk %s", n)
            time.sleep(0.02)
            yield b"x" * 1000

    return StreamingHttpResponse(chunks())


def stream_fails(request):
    def chunks():
        yield b"first"
        raise RuntimeError("lost the data source")

    return StreamingHttpResponse(chunks())


def file(request):
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it
    handle.write(b"f" * 100_000)
    handle.seek(0)
    return FileResponse(handle, content_type="application/octet-stream")


async def async_item(request, pk):
    await asyncio.sleep(0.001)
    logger.info("async item %s", pk)
    return JsonResponse({"id": pk})


async def async_slow(request):
    await asyncio.sleep(2)
    return JsonResponse({"slept": 2})


async def async_stream(request):
    async def chunks():
        for n in range(3):
            await asyncio.sleep(0.01)
            logger.info("async chunk %s", n)
            yield b"y" * 1000

    return StreamingHttpResponse(chunks())


def cart_add(request):
    time.sleep(0.0002)
    RETAINED.append(b"f" * LEAK_SIZE)  # FUNCTION_LEAKS
    return JsonResponse({"items": len(RETAINED)})


class Shelf(View):
    def get(self, request, which):
        time.sleep(0.0002)  # waits on I/O, as a real view does
        if which == LEAKING_SHELF:
            RETAINED.append(b"c" * LEAK_SIZE)  # LEAKS_HERE
        return JsonResponse({"shelf": which, "n": work(SHELVES.index(which))})
