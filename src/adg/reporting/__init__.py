"""Reporting: the pages and tables the stages write (the selection report, the selector
comparison, the curation history), as HTML, Markdown and inline SVG."""
