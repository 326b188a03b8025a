"""Sign a 32-byte digest with a key URI through the system libcrypto, as any C program would.

    OPENSSL_CONF=hsmcert.cnf python native/tools/sign_loop.py URI COUNT RUNS [THREADS]

Only ctypes and libcrypto.so.3 are loaded (no pyca/cryptography, whose bundled OpenSSL cannot load the
provider); OPENSSL_CONF loads the provider. Prints a JSON list of RUNS lists of COUNT latencies (seconds)
after 20 warm-up signatures; with THREADS > 1, each run is THREADS threads signing COUNT times at once
(ctypes releases the GIL inside libcrypto, so the provider is really used concurrently) and the list
holds all their latencies. Used by bench/provider.py and tests/native.
"""

import ctypes
import json
import sys
import threading
import time

if len(sys.argv) not in (4, 5):
    raise SystemExit("usage: sign_loop.py KEY-URI COUNT RUNS [THREADS]")
uri, count, runs = sys.argv[1].encode(), int(sys.argv[2]), int(sys.argv[3])
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
c = ctypes.CDLL("libcrypto.so.3")
P = ctypes.c_void_p
c.OPENSSL_init_crypto.argtypes = [ctypes.c_uint64, P]
c.OPENSSL_init_crypto(0x40, None)  # OPENSSL_INIT_LOAD_CONFIG
c.OSSL_STORE_open.restype = P
c.OSSL_STORE_open.argtypes = [ctypes.c_char_p, P, P, P, P]
c.OSSL_STORE_load.restype = P
c.OSSL_STORE_load.argtypes = [P]
c.OSSL_STORE_INFO_get1_PKEY.restype = P
c.OSSL_STORE_INFO_get1_PKEY.argtypes = [P]
c.EVP_PKEY_CTX_new_from_pkey.restype = P
c.EVP_PKEY_CTX_new_from_pkey.argtypes = [P, P, P]
c.EVP_PKEY_sign_init.argtypes = [P]
c.EVP_PKEY_sign.argtypes = [
    P,
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.c_char_p,
    ctypes.c_size_t,
]
c.EVP_PKEY_CTX_free.argtypes = [P]
store = c.OSSL_STORE_open(uri, None, None, None, None)
if not store:
    raise SystemExit(
        f"cannot open {uri.decode()}: is the provider loaded (OPENSSL_CONF) and the agent running?"
    )
info = c.OSSL_STORE_load(store)
if not info:
    raise SystemExit(f"{uri.decode()} holds no key the provider could load (see the agent's log)")
pkey = c.OSSL_STORE_INFO_get1_PKEY(info)
if not pkey:
    raise SystemExit(f"{uri.decode()} is not a private key")
digest = bytes(range(32))


def sign():
    sig = ctypes.create_string_buffer(256)
    ctx = c.EVP_PKEY_CTX_new_from_pkey(None, pkey, None)
    n = ctypes.c_size_t(256)
    assert c.EVP_PKEY_sign_init(ctx) == 1 and c.EVP_PKEY_sign(ctx, sig, ctypes.byref(n), digest, 32) == 1
    c.EVP_PKEY_CTX_free(ctx)


for _ in range(20):
    sign()


def loop(lat):
    for _ in range(count):
        t = time.perf_counter()
        sign()
        lat.append(time.perf_counter() - t)


out = []
for _ in range(runs):
    lat = []
    workers = [threading.Thread(target=loop, args=(lat,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(lat) == count * threads, "a signing thread failed"
    out.append(lat)
print(json.dumps(out))
