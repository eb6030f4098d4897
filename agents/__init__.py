"""LLM agents: onboarding, thread summaries, the moderation judge.

Agents are pure: a snapshot goes in, a typed result (pydantic) plus usage comes
out; the service or task around them reads and writes the database. Every call
is audited; one factory builds the chat model from settings.

(Empty until the AI issues land; see docs/ROADMAP.md.)
"""
