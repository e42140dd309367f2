"""ORM models. Importing this package registers every table on ``Base.metadata``."""

from backend.models.activity import Activity, Reduction, ReductionEvaluation
from backend.models.audit import AuditHead, AuditLog
from backend.models.auth import PartnerNonce, RefreshToken
from backend.models.binding import FraudSignal, PartnerBinding
from backend.models.community import Community, CommunityMember
from backend.models.enterprise import Enterprise
from backend.models.governance import PolicyVersion
from backend.models.household import Household, HouseholdMember
from backend.models.ledger import (
    BudgetCounter,
    Clawback,
    JournalEntry,
    LedgerAccount,
    Lot,
    LotAllocation,
    Posting,
    QueuedCredit,
)
from backend.models.merchant import Merchant, MerchantStaff
from backend.models.partner import Partner
from backend.models.region import Region
from backend.models.resident import Resident
from backend.models.spending import (
    Donation,
    Offer,
    OfferRegion,
    OpenedRight,
    Redemption,
    RightGrant,
    SettlementStatement,
    WelfareProject,
)
from backend.models.user import Role, User, UserRole

__all__ = [
    "Activity",
    "AuditHead",
    "AuditLog",
    "BudgetCounter",
    "Clawback",
    "Community",
    "CommunityMember",
    "Donation",
    "Enterprise",
    "FraudSignal",
    "Household",
    "HouseholdMember",
    "JournalEntry",
    "LedgerAccount",
    "Lot",
    "LotAllocation",
    "Merchant",
    "MerchantStaff",
    "Offer",
    "OfferRegion",
    "OpenedRight",
    "Partner",
    "PartnerBinding",
    "PartnerNonce",
    "PolicyVersion",
    "Posting",
    "QueuedCredit",
    "Redemption",
    "Reduction",
    "ReductionEvaluation",
    "RefreshToken",
    "Region",
    "Resident",
    "RightGrant",
    "Role",
    "SettlementStatement",
    "User",
    "UserRole",
    "WelfareProject",
]
