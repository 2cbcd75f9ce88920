from __future__ import annotations

from django.urls import path

from gallery import (
    views,
    views_articles,
    views_bulk,
    views_cloud,
    views_costs,
    views_culling,
    views_policies,
    views_previews,
)

app_name = "gallery"
urlpatterns = [
    path("", views.article_list, name="article_list"),
    path("inbox/", views.inbox, name="inbox"),
    path("costs/", views_costs.costs, name="costs"),
    path("costs.csv", views_costs.costs_csv, name="costs_csv"),
    path("new-article/", views_articles.article_new, name="article_new"),
    path("import-articles/", views_articles.articles_import_view, name="articles_import"),
    path("articles/<slug:slug>/edit/", views_articles.article_edit, name="article_edit"),
    path("articles/<slug:slug>/counts/", views_articles.article_counts, name="article_counts"),
    path("article-counts/", views_articles.article_list_counts, name="article_list_counts"),
    path("inbox/compare/", views.inbox_compare, name="inbox_compare"),
    path("articles/<slug:slug>/", views.article_detail, name="article_detail"),
    path("articles/<slug:slug>/generate/", views.run_create, name="run_create"),
    path("articles/<slug:slug>/wand/", views.article_wand_view, name="article_wand"),
    path("articles/<slug:slug>/cloud/", views_cloud.article_cloud, name="article_cloud"),
    path("articles/<slug:slug>/series/", views.series_look, name="series_look"),
    path("articles/<slug:slug>/history/", views.article_history, name="article_history"),
    path("articles/<slug:slug>/compare/", views.compare, name="compare"),
    path("runs/<int:pk>/", views.run_card, name="run_card"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/previews/<int:index>.jpg", views_previews.run_preview, name="run_preview"),
    path("runs/<int:pk>/regenerate/", views.run_regenerate_view, name="run_regenerate"),
    path("candidates/bulk/", views_bulk.candidates_bulk, name="candidates_bulk"),
    path("batches/<uuid:batch>/undo/", views_bulk.batch_undo_view, name="batch_undo"),
    path("candidates/<int:pk>/", views.candidate_detail, name="candidate_detail"),
    path("candidates/<int:pk>/image.png", views.candidate_image, name="candidate_image"),
    path(
        "candidates/<int:pk>/thumb/<str:version>-<int:width>.webp",
        views.candidate_thumbnail,
        name="candidate_thumbnail",
    ),
    path("candidates/<int:pk>/review/", views.candidate_decide, name="candidate_review"),
    path("candidates/<int:pk>/rate/", views_culling.candidate_rate_view, name="candidate_rate"),
    path("candidates/<int:pk>/hero/", views.candidate_make_hero, name="candidate_hero"),
    path("candidates/<int:pk>/regenerate/", views.candidate_regenerate_view, name="candidate_regenerate"),
    path("candidates/<int:pk>/file/", views.candidate_file, name="candidate_file"),
    path("candidates/<int:pk>/publish/", views.candidate_publish, name="candidate_publish"),
    path(
        "candidates/<int:pk>/stop-auto-publish/",
        views_policies.candidate_stop_auto_publish_view,
        name="candidate_stop_auto_publish",
    ),
    path("publications/<int:pk>/", views.publication_card, name="publication_card"),
    path("publications/<int:pk>/retry/", views.publication_retry_view, name="publication_retry"),
    path("publications/<int:pk>/unpublish/", views.publication_unpublish_view, name="publication_unpublish"),
    path("publications/<int:pk>/purge/", views.publication_purge_view, name="publication_purge"),
]
