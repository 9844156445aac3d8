"""The HTTP service: a thin layer over the core. The core never imports from here."""
