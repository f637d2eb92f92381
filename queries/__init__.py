"""Cross-example questions over STCGs in Neo4j: the template library, metrics, report and views."""

from queries.library import QueryLibrary, load_template, template_names

__all__ = ["QueryLibrary", "load_template", "template_names"]
