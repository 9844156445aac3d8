"""The routes of the service, one module per resource; ``app.py`` includes them all."""
