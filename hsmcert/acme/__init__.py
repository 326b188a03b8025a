"""ACME (RFC 8555) for keys that never leave the HSM, through certbot's ``acme`` library and josepy.

- :mod:`hsmcert.acme.keys`: the account key, a local file or an HSM key (JWS signed in the HSM);
- :mod:`hsmcert.acme.account`: where accounts are recorded (hsmcert's config directory);
- :mod:`hsmcert.acme.client`: the protocol client (nonces, Retry-After, rate limits, polling, errors);
- :mod:`hsmcert.acme.challenges`: HTTP-01 (webroot, nginx site, standalone) and DNS-01 (hooks) responders;
- :mod:`hsmcert.acme.flow`: register, order, rollover as the commands and ``hsmcert renew`` use them.
"""
