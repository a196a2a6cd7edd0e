"""The contracts and the knowledge: the intake schema, the knowledge base and its rules.

The bottom floor: nothing here imports from another subpackage of `pipeline`.
"""

from pipeline.contract.knowledge import KnowledgeBase, KnowledgeBaseError
from pipeline.contract.loader import default_knowledge_base, load_knowledge_base, parse_knowledge_base
from pipeline.contract.schema import Schema, default_schema, load_schema

__all__ = [
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Schema",
    "default_knowledge_base",
    "default_schema",
    "load_knowledge_base",
    "load_schema",
    "parse_knowledge_base",
]
