"""ORM models. Importing this package registers every table on ``Base.metadata``."""

from backend.models.activity import Activity, Reduction
from backend.models.audit import AuditHead, AuditLog
from backend.models.auth import PartnerNonce, RefreshToken
from backend.models.community import Community, CommunityMember
from backend.models.enterprise import Enterprise
from backend.models.governance import PolicyVersion
from backend.models.household import Household, HouseholdMember
from backend.models.merchant import Merchant, MerchantStaff
from backend.models.partner import Partner
from backend.models.region import Region
from backend.models.resident import Resident
from backend.models.user import Role, User, UserRole

__all__ = [
    "Activity",
    "AuditHead",
    "AuditLog",
    "Community",
    "CommunityMember",
    "Enterprise",
    "Household",
    "HouseholdMember",
    "Merchant",
    "MerchantStaff",
    "Partner",
    "PartnerNonce",
    "PolicyVersion",
    "Reduction",
    "RefreshToken",
    "Region",
    "Resident",
    "Role",
    "User",
    "UserRole",
]
