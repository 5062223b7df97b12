"""SQLAlchemy 2 models, sessions and Alembic migrations."""

from models.api_keys import ApiKey
from models.audit import AuditEntry
from models.base import Base, status_is_one_of, utcnow
from models.event_sets import EventSet, EventSetKind, EventSetStatus
from models.leads import Lead
from models.mappings import Mapping
from models.postbacks import (
    FINAL_STATUSES,
    NOT_DELIVERED_STATUSES,
    OPEN_STATUSES,
    REPLAYABLE_STATUSES,
    DeliveryAttempt,
    Postback,
    PostbackStatus,
    is_due,
)
from models.triggers import OPEN_TRIGGER_STATUSES, Trigger, TriggerStatus
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
    "NOT_DELIVERED_STATUSES",
    "OPEN_STATUSES",
    "OPEN_TRIGGER_STATUSES",
    "REPLAYABLE_STATUSES",
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
    "is_due",
    "status_is_one_of",
    "utcnow",
]
