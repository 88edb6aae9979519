"""Errors of the rewards package: each names its case with a stable ``code`` (``CodedError``)."""

from __future__ import annotations

from codes.errors import CodedError


class RewardsError(CodedError):
    """Base class of everything the rewards package raises on purpose."""


class CampaignError(RewardsError):
    """A campaign the API cannot accept."""

    code = "invalid_campaign"


class MemberError(RewardsError):
    """A member id or tier the API cannot accept."""

    code = "invalid_member"


class TimezoneFixed(RewardsError):
    """A saved campaign cannot move to another time zone: its days, and when each day's seed
    is revealed, hang on it. The message after the reply's prefix names the zone it runs in."""

    code = "timezone_fixed"

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}: a campaign's time zone cannot change")


class StaleCampaign(RewardsError):
    """The draws were computed from a campaign that has been saved again since: reload it."""

    code = "stale_campaign"
