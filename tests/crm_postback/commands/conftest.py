"""Fixtures of the cross-face tests: `face` (faces.py) and the admin ones it asks for; and
`add_acme`, the event set "acme" added through a face."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tests.conftest import TOKEN  # type: ignore[import-not-found]
from tests.crm_postback.commands.faces import (  # type: ignore[import-not-found]  # noqa: F401
    Face,
    face,
)
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]  # noqa: F401
    admin_client,
    admin_token,
    alice,
    api,
    browser,
    make_user,
)


def add_acme(
    through: Face,
    *,
    cli_options: Sequence[str],
    form: Mapping[str, str],
    body: Mapping[str, Any],
) -> str:
    """Adds the event set "acme" with the token TOKEN through a face, the other fields as that
    face spells them; asserts the face accepted it and returns what it answered."""
    if through.name == "cli":
        code, out = through.cli(
            "event-set", "add", "--name", "acme", *cli_options, input=f"{TOKEN}\n"
        )
        assert code == 0, out
        return out
    if through.name == "page":
        response = through.post_form("/event-sets/new", name="acme", access_token=TOKEN, **form)
        assert response.status_code == 303, response.text
        return response.text
    response = through.api.post(
        "/admin/api/event-sets", json={"name": "acme", "access_token": TOKEN, **body}
    )
    assert response.status_code == 201, response.text
    return response.text
