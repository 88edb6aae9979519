"""The handlers, one module per resource; each declares its routes."""
