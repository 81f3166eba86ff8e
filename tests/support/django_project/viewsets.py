"""A Django REST framework viewset (imported only where DRF is installed)."""

from rest_framework import viewsets
from rest_framework.response import Response

RETAINED = []


class ProductViewSet(viewsets.ViewSet):
    def list(self, request):
        return Response([{"id": n} for n in range(3)])

    def retrieve(self, request, pk=None):
        RETAINED.append(bytes(4096))  # VIEWSET_LEAKS
        return Response({"id": pk})
