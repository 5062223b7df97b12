"""The path convertors of routes that take a lead id: imported by every module that declares
such a route, so each finds them registered whatever was imported first."""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor


class LeadIdConvertor(PathConvertor):
    """Any lead id, including "/" (sent as %2F) and control characters."""

    regex = r"(?s:.+)"


class UpsertLeadIdConvertor(PathConvertor):
    """As LeadIdConvertor, except that PUT .../{id}/postbacks (or /consent-withdrawal) is not
    a lead named "{id}/postbacks" but a method that route does not allow (405)."""

    regex = r"(?s:(?!.*/(?:postbacks|consent-withdrawal)\Z).+)"


register_url_convertor("lead", LeadIdConvertor())
register_url_convertor("upsert_lead", UpsertLeadIdConvertor())
