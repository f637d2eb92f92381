"""Cross-example questions over STCGs in Neo4j: the template library, metrics, report and views."""

from queries.library import NewerRunWarning, QueryLibrary, load_template, template_names

__all__ = ["NewerRunWarning", "QueryLibrary", "load_template", "template_names"]
