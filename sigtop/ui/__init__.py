"""The Textual side: the app, its drill-down and help screens, the table widget, and the model's thread.

Built from the table registry (sigtop.tables); draws the snapshots the
model's thread posts; takes batches from any `sigtop.contract.Source`;
never imports the live side.
"""
