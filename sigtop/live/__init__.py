"""The live side: the only package that touches the kernel (BCC, tracefs, /proc).

Imported only when a live source is built, so help, replay and the tests of
the model and UI run without root or BCC. Nothing outside this package
imports `bcc`; the UI never imports this package.
"""
