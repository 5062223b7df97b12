"""Fixtures of the cross-face tests: `face` (faces.py) and the admin ones it asks for."""

from tests.crm_postback.commands.faces import face  # type: ignore[import-not-found]  # noqa: F401
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]  # noqa: F401
    admin_client,
    admin_token,
    alice,
    api,
    browser,
    make_user,
)
