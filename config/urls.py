from django.contrib import admin
from django.urls import path

admin.site.site_header = "Levy administration"
admin.site.site_title = "Levy"

urlpatterns = [
    path("admin/", admin.site.urls),
]
