"""Ready-made :class:`~depot.fields.upload.UploadedFile` types for particular kinds of files."""
