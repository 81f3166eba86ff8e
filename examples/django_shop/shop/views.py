import logging

from django.http import JsonResponse, StreamingHttpResponse
from django.views import View

logger = logging.getLogger("shop")
CARTS = []  # grows by one cart per request of POST /cart/items/: the leak the watch finds


def health(request):
    return JsonResponse({"ok": True})


class ItemView(View):
    def get(self, request, pk):
        logger.info("item %s viewed", pk)
        return JsonResponse({"id": pk, "name": f"item {pk}"})


def add_to_cart(request):
    CARTS.append({"items": [{"sku": n} for n in range(20)]})
    return JsonResponse({"carts": len(CARTS)})


def checkout(request):
    raise RuntimeError("payment provider unavailable")


def export(request):
    def rows():
        yield "id,name\n"
        for n in range(10_000):
            yield f"{n},item {n}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")
