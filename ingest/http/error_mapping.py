"""The HTTP status of each error of the domain packages, in one table.

Handlers let these errors propagate and ``json_errors`` answers them with the ``ApiError`` class
of the error's nearest class in ``STATUSES`` (so its status), the error's own code if it is a
``CodedError`` (else the status's) and its message. A handler that has better words for the
case, such as which code of its request is at fault, gives them to ``api_error``. A domain
error outside the table is a bug: an internal error.
"""

from __future__ import annotations

from collections.abc import Mapping

from codes.errors import BatchError, CodedError
from fraud.errors import DistributorError, ShipmentConflict, ShipmentDuplicate, TerritoryError
from ingest.errors import ApiError, Conflict, ValidationFailed
from rewards.errors import CampaignError, MemberError, TimezoneFixed

STATUSES: Mapping[type[Exception], type[ApiError]] = {
    BatchError: ValidationFailed,
    TerritoryError: ValidationFailed,
    DistributorError: ValidationFailed,
    ShipmentConflict: Conflict,
    ShipmentDuplicate: ValidationFailed,
    CampaignError: ValidationFailed,
    MemberError: ValidationFailed,
    TimezoneFixed: Conflict,
}
DOMAIN_ERRORS = tuple(STATUSES)
"""The classes to catch: any error of one of them has a status."""


def api_error(error: Exception, message: str | None = None) -> ApiError:
    """``error`` as the API answers it; ``message`` in place of the error's own if given."""
    for cls in type(error).__mro__:
        answer = STATUSES.get(cls)
        if answer is not None:
            code = error.code if isinstance(error, CodedError) else None
            return answer(str(error) if message is None else message, code)
    raise TypeError(f"no HTTP status for {type(error).__name__}")
