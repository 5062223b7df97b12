"""Workspaces (one per advertiser or client) and who may do what in each.

Every table whose rows belong to one advertiser carries `workspace_id` (the `WorkspaceOwned`
mixin); `models.workspace_scope` filters every query of such a table by the workspace its
session is scoped to.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, StrEnumText, UTCDateTime, utcnow

# Made by the migration that introduced workspaces; what an install that never creates one
# uses, and where the data of earlier versions went.
DEFAULT_WORKSPACE_ID = 1
DEFAULT_WORKSPACE_NAME = "default"


class Role(StrEnum):
    """What an admin user may do in one workspace; each role includes the ones before it."""

    VIEWER = "viewer"  # read everything in the workspace except tokens, in any form
    EDITOR = "editor"  # + mappings, preview, replay
    OWNER = "owner"  # + event sets, access tokens, API keys, members

    def includes(self, other: Role) -> bool:
        return _RANK[self] >= _RANK[other]


_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkspaceFiltered:
    """A model whose queries `models.workspace_scope` filters by `workspace_id`; NULL is no
    workspace's (the audit entries of the instance itself)."""

    workspace_id: Mapped[int | None] = mapped_column(Integer)


class WorkspaceOwned(WorkspaceFiltered):
    """Rows of exactly one workspace. Deleting a workspace deletes them."""

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))


class WorkspaceOwnedThroughParent(WorkspaceOwned):
    """Rows of exactly one workspace whose parent row (a foreign key with ON DELETE CASCADE,
    declared by the model) is of the same workspace: deleting the workspace deletes the parent
    and so them. The workspace has no foreign key of its own here: on the tables written for
    every trigger, its check (an index lookup and a row lock on the workspace) cost more than
    it guarded."""

    workspace_id: Mapped[int] = mapped_column(Integer)


class WorkspaceMember(WorkspaceOwned, Base):
    """An admin user's role in one workspace."""

    __tablename__ = "workspace_members"
    __table_args__ = (
        UniqueConstraint("workspace_id", "user_id"),
        Index("ix_workspace_members_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(StrEnumText(Role, 16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
