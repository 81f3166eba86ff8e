from django.urls import include, path, re_path

from . import views

shop = [
    path("items/<int:pk>/", views.item),
    path("slow/<int:pk>/", views.slow_item),
]

urlpatterns = [
    path("", include(shop)),
    path("api/v1/", include([path("items/<int:pk>/", views.item, name="api-item")])),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", views.archive),
    path("fail/", views.fail),
    path("export/", views.export),
    path("missing/", views.not_found),
    path("stream/", views.stream),
    path("stream-fails/", views.stream_fails),
    path("file/", views.file),
    path("async/<int:pk>/", views.async_item),
    path("async-stream/", views.async_stream),
    path("async-slow/", views.async_slow),
    path("cart/add/", views.cart_add),
    *[path(f"shelf/{x}/", views.Shelf.as_view(), {"which": x}) for x in views.SHELVES],
]

try:
    from rest_framework import routers

    from .viewsets import ProductViewSet
except ImportError:  # Django REST framework not installed: its test is skipped
    pass
else:
    router = routers.SimpleRouter()
    router.register("products", ProductViewSet, basename="product")
    urlpatterns.append(path("drf/", include(router.urls)))
