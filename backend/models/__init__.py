"""ORM models. Importing this package registers every table on ``Base.metadata``."""

from backend.models.activity import Activity, Reduction, ReductionEvaluation
from backend.models.audit import AuditHead, AuditLog
from backend.models.auth import PartnerNonce, RefreshToken
from backend.models.bank_share import BankPartner, BankShare, BankShareEvent
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
from backend.models.market import (
    MarketBatch,
    MarketBatchMember,
    MarketExclusion,
    MarketSerial,
    MarketSerialCounter,
    MarketTransaction,
)
from backend.models.merchant import Merchant, MerchantStaff
from backend.models.operations import Alert, DailyActivityStats, DailyRegionStats, JobRun, StatsRollup
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
    "Alert",
    "AuditHead",
    "AuditLog",
    "BankPartner",
    "BankShare",
    "BankShareEvent",
    "BudgetCounter",
    "Clawback",
    "Community",
    "CommunityMember",
    "DailyActivityStats",
    "DailyRegionStats",
    "Donation",
    "Enterprise",
    "FraudSignal",
    "Household",
    "HouseholdMember",
    "JobRun",
    "JournalEntry",
    "LedgerAccount",
    "Lot",
    "LotAllocation",
    "MarketBatch",
    "MarketBatchMember",
    "MarketExclusion",
    "MarketSerial",
    "MarketSerialCounter",
    "MarketTransaction",
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
    "StatsRollup",
    "User",
    "UserRole",
    "WelfareProject",
]
