"""Recording that a lead withdrew consent: nothing more is sent for it.

The lead keeps its row (its keys stay until `erase-lead` or the retention purge removes
them; keys sent for it later are not stored, `intake.lead_keys.merge_lead_keys`);
`consent_withdrawn_at` is set once and never cleared (a lead who consents again comes back
under a new lead id). In the same transaction every postback of the lead still waiting
(`pending`, `retrying`) ends `consent_withdrawn` and loses its event body. Triggers resolved
later make `consent_withdrawn` rows (`worker.processing`), and claiming refuses a row whose
lead withdrew in between (`worker.delivery.claim`), dropping its body too. A postback already
claimed (`sending`) is in flight: it may still arrive; the result counts those.

A second call changes nothing and says so (`already_withdrawn`), unless a postback was
planned meanwhile and still waits: that one is stopped too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CursorResult, func, select, update

from crm_postback.commands.lookups import NotFound
from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.core.errors import FieldError
from models import Lead, Postback, PostbackStatus, Role, utcnow
from worker.claim_planning import consent_withdrawn_values

UNKNOWN_LEAD = "no lead of this id in this workspace"


@dataclass(frozen=True)
class WithdrawConsent:
    lead_id: str  # the routing system's id of the lead


@dataclass(frozen=True)
class ConsentWithdrawn:
    lead_id: str
    withdrawn_at: datetime  # the first withdrawal's time
    already_withdrawn: bool  # an earlier call recorded it: this one changed nothing else
    postbacks_stopped: int  # pending or retrying: now `consent_withdrawn`
    postbacks_in_flight: int  # claimed by a worker before the withdrawal: may still arrive

    @property
    def message(self) -> str:
        if self.already_withdrawn and not self.postbacks_stopped:
            return (
                f"lead {self.lead_id!r} had already withdrawn consent "
                f"({self.withdrawn_at.isoformat(timespec='seconds')}); nothing changed"
            )
        text = (
            f"lead {self.lead_id!r}: consent withdrawn; "
            f"{self.postbacks_stopped} waiting postback(s) stopped"
        )
        if self.postbacks_in_flight:
            text += f"; {self.postbacks_in_flight} already being sent may still arrive at TikTok"
        return text


def withdraw_consent(request: WithdrawConsent, actor: Actor) -> ConsentWithdrawn:
    """Marks the actor's workspace's lead as having withdrawn consent and stops its waiting
    postbacks; `NotFound` for a lead the workspace does not have."""
    with unit_of_work(actor, requires=Role.EDITOR) as uow:
        session = uow.session
        lead = session.scalar(
            select(Lead).where(Lead.lead_ref == request.lead_id).with_for_update()
        )
        if lead is None:
            raise NotFound([FieldError("lead_id", UNKNOWN_LEAD)])
        already = lead.consent_withdrawn_at is not None
        if lead.consent_withdrawn_at is None:
            lead.consent_withdrawn_at = utcnow()
            session.flush()
        withdrawn_at = lead.consent_withdrawn_at
        assert withdrawn_at is not None
        of_lead = Postback.lead_ref == request.lead_id
        stopped = session.execute(
            update(Postback)
            .where(of_lead, Postback.status.in_((PostbackStatus.PENDING, PostbackStatus.RETRYING)))
            .values(consent_withdrawn_values(withdrawn_at)),
            execution_options={"synchronize_session": False},
        )
        assert isinstance(stopped, CursorResult)
        in_flight = session.scalar(
            select(func.count())
            .select_from(Postback)
            .where(of_lead, Postback.status == PostbackStatus.SENDING)
        )
        result = ConsentWithdrawn(
            lead_id=request.lead_id,
            withdrawn_at=withdrawn_at,
            already_withdrawn=already,
            postbacks_stopped=int(stopped.rowcount or 0),
            postbacks_in_flight=int(in_flight or 0),
        )
        if not already or result.postbacks_stopped:
            uow.audit(
                "lead.consent_withdrawn",
                entity_type="lead",
                entity_id=lead.id,
                after={
                    "postbacks_stopped": result.postbacks_stopped,
                    "postbacks_in_flight": result.postbacks_in_flight,
                },
                note=f"lead {request.lead_id!r} withdrew consent; nothing more is sent for it",
            )
    return result
