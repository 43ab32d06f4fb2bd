"""Filters run on new uploads of a column (see :class:`depot.fields.interfaces.FileFilter`)."""
