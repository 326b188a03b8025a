"""The command line: parse, call the library, render. No logic of its own lives here.

Each module in this package (other than those starting with ``_``) defines ``register(app)`` and adds its
commands; :mod:`hsmcert.cli.main` discovers them. Modules import the Azure SDKs and cryptography only
inside command bodies, so ``hsmcert --help`` stays fast.
"""
