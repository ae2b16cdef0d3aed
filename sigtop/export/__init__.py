"""What sigtop hands to other systems (log pipelines now; Prometheus later), over any Source.

Never imports the UI or the live side: a stream of a recording and of the
kernel are the same code.
"""
