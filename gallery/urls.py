from __future__ import annotations

from django.urls import path

from gallery import views

app_name = "gallery"
urlpatterns = [
    path("", views.article_list, name="article_list"),
    path("articles/<slug:slug>/", views.article_detail, name="article_detail"),
    path("articles/<slug:slug>/generate/", views.run_create, name="run_create"),
    path("runs/<int:pk>/", views.run_card, name="run_card"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("candidates/<int:pk>/image.png", views.candidate_image, name="candidate_image"),
]
