"""SQLAlchemy 2 models, sessions and Alembic migrations."""

from models.api_keys import ApiKey
from models.audit import AuditEntry
from models.base import Base, utcnow
from models.event_sets import EventSet, EventSetKind, EventSetStatus
from models.leads import Lead
from models.mappings import Mapping
from models.postbacks import FINAL_STATUSES, DeliveryAttempt, Postback, PostbackStatus
from models.triggers import Trigger, TriggerStatus
from models.users import AdminSession, AdminToken, AdminUser, AdminUserSource
from models.workspaces import (
    DEFAULT_WORKSPACE_ID,
    DEFAULT_WORKSPACE_NAME,
    Role,
    Workspace,
    WorkspaceMember,
    WorkspaceOwned,
)

__all__ = [
    "DEFAULT_WORKSPACE_ID",
    "DEFAULT_WORKSPACE_NAME",
    "FINAL_STATUSES",
    "AdminSession",
    "AdminToken",
    "AdminUser",
    "AdminUserSource",
    "ApiKey",
    "AuditEntry",
    "Base",
    "DeliveryAttempt",
    "EventSet",
    "EventSetKind",
    "EventSetStatus",
    "Lead",
    "Mapping",
    "Postback",
    "PostbackStatus",
    "Role",
    "Trigger",
    "TriggerStatus",
    "Workspace",
    "WorkspaceMember",
    "WorkspaceOwned",
    "utcnow",
]
