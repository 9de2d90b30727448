"""The top floor: the build driver (the one place that composes the stages into a pipeline,
configured by one frozen :class:`~vcc.driver.build.BuildConfig`) and the ``vcc`` command line.

Nothing inside vcc imports this package.
"""
