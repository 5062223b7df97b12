"""A local HTTP stand-in for TikTok's Events API, with fault injection and a control API."""

from crm_postback.simulator.contract import ContractError, validate_track_request
from crm_postback.simulator.control import SimulatorControl
from crm_postback.simulator.faults import Faults
from crm_postback.simulator.registered_sets import RegisteredEventSet
from crm_postback.simulator.server import SimulatorServer, run
from crm_postback.simulator.state import SimulatorState

__all__ = [
    "ContractError",
    "Faults",
    "RegisteredEventSet",
    "SimulatorControl",
    "SimulatorServer",
    "SimulatorState",
    "run",
    "validate_track_request",
]
