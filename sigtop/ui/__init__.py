"""The Textual side: the app, its screens, the table widget and the column definitions.

Reads the model; takes batches from any `sigtop.sources.Source`; never imports
the live side.
"""
