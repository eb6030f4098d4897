"""ORM models, one module per aggregate. Importing this package registers them all."""

from core.models.account import AccessToken, ApiKey, Language, User
from core.models.audit import AuditLog
from core.models.base import Base
from core.models.community import (
    Ban,
    Community,
    Invite,
    Membership,
    MembershipStatus,
    Role,
    Tier,
    Visibility,
)
from core.models.conversation import (
    Channel,
    ChannelMember,
    Conversation,
    ConversationParticipant,
    DirectMessage,
    Mention,
    Post,
    PostRevision,
    Reaction,
    Thread,
)
from core.models.course import Course, Enrollment, Lesson, LessonCompletion
from core.models.event import Event, EventRsvp, EventStatus, RsvpStatus
from core.models.notification import Notification

__all__ = [
    "AccessToken",
    "ApiKey",
    "AuditLog",
    "Ban",
    "Base",
    "Channel",
    "ChannelMember",
    "Community",
    "Conversation",
    "ConversationParticipant",
    "Course",
    "DirectMessage",
    "Enrollment",
    "Event",
    "EventRsvp",
    "EventStatus",
    "Invite",
    "Language",
    "Lesson",
    "LessonCompletion",
    "Membership",
    "MembershipStatus",
    "Mention",
    "Notification",
    "Post",
    "PostRevision",
    "Reaction",
    "Role",
    "RsvpStatus",
    "Thread",
    "Tier",
    "User",
    "Visibility",
]
