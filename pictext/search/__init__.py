"""Image search: an incremental catalog of image files, their CLIP vectors, and weighted queries."""

from pictext.search.index import Hit, Index, Report, SearchIndexError
from pictext.search.query import QueryError, Weighted, parse_terms

__all__ = ["Hit", "Index", "QueryError", "Report", "SearchIndexError", "Weighted", "parse_terms"]
