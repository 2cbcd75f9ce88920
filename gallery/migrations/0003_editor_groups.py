"""The two working groups: ``editors`` and ``admins``.

``admins`` may add, change, delete and view style presets and prompt templates; ``editors``
starts with no model permissions (the app treats membership itself as the right to act, and
members of ``admins`` count as editors too).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = ("editors", "admins")
ADMIN_MODELS = ("stylepreset", "prompttemplate")
ACTIONS = ("add", "change", "delete", "view")


def ensure_permissions(apps: Any, app_label: str, using: str) -> None:
    """Create the content types and permissions of ``app_label`` now.

    On a fresh ``migrate`` Django makes them in a post_migrate signal, after every migration,
    so they do not exist yet here. ``create_permissions`` skips app configs without a models
    module, which the migration state's stubs lack (they have no such attribute at all), so
    mark it for the call.
    """
    app_config = apps.get_app_config(app_label)
    had_attribute = hasattr(app_config, "models_module")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
    finally:
        if had_attribute:
            app_config.models_module = previous
        else:
            del app_config.models_module


def create_groups(apps: Any, schema_editor: Any) -> None:
    using = schema_editor.connection.alias
    ensure_permissions(apps, "generation", using)
    ensure_permissions(apps, "gallery", using)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name in GROUPS:
        group_model.objects.using(using).get_or_create(name=name)
    admins = group_model.objects.using(using).get(name="admins")
    codenames = [f"{action}_{model}" for model in ADMIN_MODELS for action in ACTIONS]
    permissions = permission_model.objects.using(using).filter(
        content_type__app_label="generation", codename__in=codenames
    )
    found = {permission.codename for permission in permissions}
    missing = sorted(set(codenames) - found)
    if missing:
        raise RuntimeError(f"permissions missing after create_permissions: {', '.join(missing)}")
    admins.permissions.add(*permissions)


def delete_groups(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("gallery", "0002_article_hero_candidate"),
        ("generation", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
