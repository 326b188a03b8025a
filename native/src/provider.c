/* Provider entry point: reads the openssl.cnf section, lists the operations. Nothing heavy at init:
 * the agent connection is opened on first use. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "hsmcert.h"

static OSSL_FUNC_core_new_error_fn *core_new_error;
static OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
static OSSL_FUNC_core_vset_error_fn *core_vset_error;
static OSSL_FUNC_core_get_params_fn *core_get_params;

void hsmcert_raise(HSMCERT_PROV *prov, int reason, const char *fmt, ...)
{
    va_list ap;

    if (prov == NULL || core_new_error == NULL || core_vset_error == NULL)
        return;
    core_new_error(prov->handle);
    if (core_set_error_debug != NULL)
        core_set_error_debug(prov->handle, OPENSSL_FILE, OPENSSL_LINE, "hsmcert");
    va_start(ap, fmt);
    core_vset_error(prov->handle, (uint32_t)reason, fmt, ap);
    va_end(ap);
}

static const OSSL_ITEM reason_strings[] = {
    { HSMCERT_R_AGENT, "hsmcert agent error" },
    { HSMCERT_R_UNSUPPORTED, "not supported by the HSM key" },
    { HSMCERT_R_NO_PRIVATE_EXPORT, "private key stays in the HSM" },
    { HSMCERT_R_BAD_ARGUMENT, "bad argument" },
    { 0, NULL },
};

static const OSSL_ITEM *prov_reason_strings(void *provctx)
{
    return reason_strings;
}

static const OSSL_PARAM *prov_gettable_params(void *provctx)
{
    static const OSSL_PARAM table[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_END,
    };
    return table;
}

static int prov_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(p, "hsmcert provider (keys in Azure Managed HSM / Key Vault)"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(p, HSMCERT_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(p, "hsmcert " HSMCERT_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL && !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

#define ALG(names, fns, desc) { names, HSMCERT_PROPS, fns, desc }

static const OSSL_ALGORITHM store_algs[] = {
    ALG("managedhsm", hsmcert_store_functions, "Azure Managed HSM key reference"),
    ALG("vault", hsmcert_store_functions, "Azure Key Vault key reference"),
    ALG("akv", hsmcert_store_functions, "akv: key reference"),
    ALG("azurekms", hsmcert_store_functions, "azurekms: key reference"),
    ALG("engine", hsmcert_store_functions, "engine:e_akv: key reference"),
    ALG("https", hsmcert_store_functions, "Key Vault key identifier URL"),
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM keymgmt_algs[] = {
    ALG("RSA:rsaEncryption:1.2.840.113549.1.1.1", hsmcert_rsa_keymgmt_functions, "HSM RSA key"),
    ALG("EC:id-ecPublicKey:1.2.840.10045.2.1", hsmcert_ec_keymgmt_functions, "HSM EC key"),
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM signature_algs[] = {
    ALG("RSA:rsaEncryption:1.2.840.113549.1.1.1", hsmcert_rsa_signature_functions, "RSA signature in the HSM"),
    ALG("ECDSA", hsmcert_ecdsa_signature_functions, "ECDSA in the HSM"),
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM asym_cipher_algs[] = {
    ALG("RSA:rsaEncryption:1.2.840.113549.1.1.1", hsmcert_rsa_asym_cipher_functions, "RSA-OAEP in the HSM"),
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM decoder_algs[] = {
    { "DER", HSMCERT_PROPS ",input=pem", hsmcert_pem_decoder_functions, "PEM " HSMCERT_PEM_LABEL },
    { "RSA", HSMCERT_PROPS ",input=der,structure=" HSMCERT_DER_STRUCTURE, hsmcert_der_rsa_decoder_functions,
      "hsmcert RSA key reference" },
    { "EC", HSMCERT_PROPS ",input=der,structure=" HSMCERT_DER_STRUCTURE, hsmcert_der_ec_decoder_functions,
      "hsmcert EC key reference" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_STORE:
        return store_algs;
    case OSSL_OP_KEYMGMT:
        return keymgmt_algs;
    case OSSL_OP_SIGNATURE:
        return signature_algs;
    case OSSL_OP_ASYM_CIPHER:
        return asym_cipher_algs;
    case OSSL_OP_DECODER:
        return decoder_algs;
    default:
        return NULL;
    }
}

static void prov_teardown(void *provctx)
{
    HSMCERT_PROV *prov = provctx;

    if (prov == NULL)
        return;
    hsmcert_agent_free(prov->agent);
    OSSL_LIB_CTX_free(prov->libctx);
    free(prov);
}

static const OSSL_DISPATCH prov_dispatch[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))prov_gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))prov_reason_strings },
    { 0, NULL },
};

/* The socket: openssl.cnf `socket = PATH`, else $HSMCERT_AGENT_SOCKET, else the agent's default. */
static char *default_socket(void)
{
    const char *env = getenv("HSMCERT_AGENT_SOCKET");
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    char buf[512];

    if (env != NULL && *env != '\0')
        return strdup(env);
    if (geteuid() == 0)
        return strdup("/run/hsmcert/agent.sock");
    if (runtime != NULL && *runtime != '\0' && access(runtime, X_OK) == 0)
        snprintf(buf, sizeof(buf), "%s/hsmcert/agent.sock", runtime);
    else
        snprintf(buf, sizeof(buf), "/tmp/hsmcert-%u/agent.sock", (unsigned)geteuid());
    return strdup(buf);
}

HSMCERT_EXPORT int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                                      const OSSL_DISPATCH **out, void **provctx)
{
    HSMCERT_PROV *prov;
    char *socket_path = NULL, *timeout = NULL;
    OSSL_PARAM params[3];
    char *path;
    int timeout_ms = HSMCERT_DEFAULT_TIMEOUT_MS;

    for (const OSSL_DISPATCH *fn = in; fn->function_id != 0; fn++) {
        switch (fn->function_id) {
        case OSSL_FUNC_CORE_NEW_ERROR:
            core_new_error = OSSL_FUNC_core_new_error(fn);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            core_set_error_debug = OSSL_FUNC_core_set_error_debug(fn);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            core_vset_error = OSSL_FUNC_core_vset_error(fn);
            break;
        case OSSL_FUNC_CORE_GET_PARAMS:
            core_get_params = OSSL_FUNC_core_get_params(fn);
            break;
        default:
            break;
        }
    }
    params[0] = OSSL_PARAM_construct_utf8_ptr("socket", &socket_path, 0);
    params[1] = OSSL_PARAM_construct_utf8_ptr("timeout_ms", &timeout, 0);
    params[2] = OSSL_PARAM_construct_end();
    if (core_get_params != NULL)
        core_get_params(handle, params);
    if (timeout != NULL && atoi(timeout) > 0)
        timeout_ms = atoi(timeout);

    if ((prov = calloc(1, sizeof(*prov))) == NULL)
        return 0;
    prov->handle = handle;
    path = socket_path != NULL && *socket_path != '\0' ? strdup(socket_path) : default_socket();
    prov->agent = path != NULL ? hsmcert_agent_new(path, timeout_ms) : NULL;
    free(path);
    prov->libctx = prov->agent != NULL ? OSSL_LIB_CTX_new_child(handle, in) : NULL;
    if (prov->libctx == NULL) {
        prov_teardown(prov);
        return 0;
    }
    *provctx = prov;
    *out = prov_dispatch;
    return 1;
}
