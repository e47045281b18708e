"""Experiments: a config file names data, model, task, optimizer and devices; this package builds them,
runs them into a work directory, evaluates a finished run and offers the ``jaxdl`` command."""
