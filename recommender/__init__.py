"""Recommendations: embedder, vector store and FAISS index, friend/event/course/topic recs.

Derived artefacts are keyed by model id and content hash and rebuildable from the database.

(Empty until the recommendations issue lands; see docs/ROADMAP.md.)
"""
