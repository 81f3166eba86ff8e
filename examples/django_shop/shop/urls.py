from django.urls import include, path

from . import views

urlpatterns = [
    path("health/", views.health),
    path("items/<int:pk>/", views.ItemView.as_view()),
    path("cart/", include([path("items/", views.add_to_cart)])),
    path("checkout/", views.checkout),
    path("export/", views.export),
]
