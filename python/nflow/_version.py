__version__ = "0.1.0"  # must equal NFLOW_VERSION of include/nflow.h (checked at import and by the tests)
