"""Physics terms, one small function per idea, each written against the array API."""
