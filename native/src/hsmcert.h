/* hsmcert OpenSSL provider: shared declarations. */
#ifndef HSMCERT_H
#define HSMCERT_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#define HSMCERT_EXPORT __attribute__((visibility("default")))
#define HSMCERT_VERSION "0.1.0"
#define HSMCERT_PROPS "provider=hsmcert"

typedef struct hsmcert_prov {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx;
} HSMCERT_PROV;

#endif
