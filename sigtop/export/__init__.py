"""The headless sinks: the JSON report and plain tables, the NDJSON stream, the Prometheus exporter.

Each runs over any source (the kernel or a recording) and never imports the
UI or the live side: a stream of a recording and of the kernel are the same code.
"""
