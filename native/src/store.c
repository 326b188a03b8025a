/* STORE for key references: managedhsm:, vault:, akv:, azurekms:, engine:e_akv: and Key Vault key
 * identifier URLs. The provider checks only the scheme; the agent parses the reference. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "hsmcert.h"

static const char *const prefixes[] = { "managedhsm:", "vault:", "akv:", "azurekms:", "engine:e_akv:" };

int hsmcert_is_keyref(const char *uri)
{
    if (uri == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncasecmp(uri, prefixes[i], strlen(prefixes[i])) == 0)
            return uri[strlen(prefixes[i])] != '\0';
    if (strncasecmp(uri, "https://", 8) == 0) {
        /* Only key identifiers: https://NAME.managedhsm.azure.net/keys/KEY[/VERSION] and vault URLs. */
        const char *path = strchr(uri + 8, '/');

        return path != NULL && strncmp(path, "/keys/", 6) == 0 && path[6] != '\0';
    }
    return 0;
}

typedef struct {
    HSMCERT_PROV *prov;
    char *uri;
    int done;
} STORE_CTX;

static void *store_open(void *provctx, const char *uri)
{
    STORE_CTX *ctx;

    if (!hsmcert_is_keyref(uri))
        return NULL; /* not a key reference: OpenSSL tries its other loaders, no error */
    if ((ctx = calloc(1, sizeof(*ctx))) == NULL || (ctx->uri = strdup(uri)) == NULL) {
        hsmcert_raise(provctx, HSMCERT_R_INTERNAL, "Out of memory.");
        free(ctx);
        return NULL;
    }
    ctx->prov = provctx;
    return ctx;
}

static int store_load(void *loaderctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    STORE_CTX *ctx = loaderctx;
    HSMCERT_KEY *key;
    int ok;

    if (ctx->done)
        return 0; /* one object per reference: eof says so */
    ctx->done = 1;
    if ((key = hsmcert_key_fetch(ctx->prov, ctx->uri)) == NULL)
        return 0; /* raised by hsmcert_key_fetch */
    ok = hsmcert_key_to_object_cb(key, object_cb, object_cbarg);
    hsmcert_key_free(key);
    return ok;
}

static int store_eof(void *loaderctx)
{
    return ((STORE_CTX *)loaderctx)->done;
}

static int store_close(void *loaderctx)
{
    STORE_CTX *ctx = loaderctx;

    if (ctx != NULL) {
        free(ctx->uri);
        free(ctx);
    }
    return 1;
}

static const OSSL_PARAM *store_settable(void *provctx)
{
    static const OSSL_PARAM table[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_END,
    };
    return table;
}

static int store_set_params(void *loaderctx, const OSSL_PARAM params[])
{
    return 1;
}

const OSSL_DISPATCH hsmcert_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))store_settable },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_params },
    { 0, NULL },
};
