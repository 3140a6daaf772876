"""contivctl: the command line. Parse, call the API layer, render. Nothing else.

No data-plane or etcd imports at module top level anywhere in this package:
``contivctl --help`` must stay fast.
"""
__version__ = "0.1.0"
