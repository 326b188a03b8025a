/* Provider entry point: reads the openssl.cnf section, lists the operations. Nothing heavy at init:
 * the agent connection is opened on first use. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "hsmcert.h"

static OSSL_FUNC_core_get_params_fn *core_get_params;

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
        goto bad;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(p, HSMCERT_VERSION))
        goto bad;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(p, "hsmcert " HSMCERT_VERSION))
        goto bad;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL && !OSSL_PARAM_set_int(p, 1))
        goto bad;
    return 1;
bad:
    hsmcert_raise(provctx, HSMCERT_R_BAD_ARGUMENT, "The provider parameter %s has an unexpected type.", p->key);
    return 0;
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
    free(prov->bad_setting);
    free(prov);
}

static const OSSL_DISPATCH prov_dispatch[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))prov_gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))hsmcert_reason_strings },
    { 0, NULL },
};

/* The socket: openssl.cnf `socket = PATH`, else $HSMCERT_AGENT_SOCKET, else the agent's default (the same
 * rule as hsmcert.agent.default_socket_path; a test compares the two). */
static char *default_socket(void)
{
    const char *env = getenv("HSMCERT_AGENT_SOCKET");
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    char buf[4096];

    if (env != NULL && *env != '\0')
        return strdup(env);
    if (geteuid() == 0)
        return strdup("/run/hsmcert/agent.sock");
    if (runtime != NULL && *runtime != '\0' && stat(runtime, &st) == 0 && S_ISDIR(st.st_mode))
        hsmcert_format(buf, sizeof(buf), "%s/hsmcert/agent.sock", runtime);
    else
        hsmcert_format(buf, sizeof(buf), "/tmp/hsmcert-%u/agent.sock", (unsigned)geteuid());
    return strdup(buf);
}

/* openssl.cnf `timeout_ms`: a whole number of milliseconds, 1 to HSMCERT_MAX_TIMEOUT_MS. Returns NULL, or
 * the sentence that refuses the value (to free). */
#define HSMCERT_MAX_TIMEOUT_MS 3600000
static char *parse_timeout(const char *text, int *timeout_ms)
{
    char *end = NULL, message[200];
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 1 || value > HSMCERT_MAX_TIMEOUT_MS) {
        hsmcert_format(message, sizeof(message), "timeout_ms = %.40s in the provider's openssl.cnf section is "
                       "not a whole number of milliseconds from 1 to %d.", text, HSMCERT_MAX_TIMEOUT_MS);
        return strdup(message);
    }
    *timeout_ms = (int)value;
    return NULL;
}

HSMCERT_EXPORT int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                                      const OSSL_DISPATCH **out, void **provctx)
{
    HSMCERT_PROV *prov;
    char *socket_path = NULL, *timeout = NULL;
    OSSL_PARAM params[3];
    char *path;
    int timeout_ms = HSMCERT_DEFAULT_TIMEOUT_MS;

    hsmcert_error_init(handle, in);
    for (const OSSL_DISPATCH *fn = in; fn->function_id != 0; fn++)
        if (fn->function_id == OSSL_FUNC_CORE_GET_PARAMS)
            core_get_params = OSSL_FUNC_core_get_params(fn);
    params[0] = OSSL_PARAM_construct_utf8_ptr("socket", &socket_path, 0);
    params[1] = OSSL_PARAM_construct_utf8_ptr("timeout_ms", &timeout, 0);
    params[2] = OSSL_PARAM_construct_end();
    if (core_get_params == NULL || !core_get_params(handle, params)) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "OpenSSL did not give the provider its settings.");
        return 0;
    }
    if ((prov = calloc(1, sizeof(*prov))) == NULL) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "Out of memory.");
        return 0;
    }
    prov->handle = handle;
    if (timeout != NULL)
        prov->bad_setting = parse_timeout(timeout, &timeout_ms);
    path = socket_path != NULL && *socket_path != '\0' ? strdup(socket_path) : default_socket();
    prov->agent = path != NULL ? hsmcert_agent_new(path, timeout_ms) : NULL;
    free(path);
    if (prov->agent == NULL) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "Out of memory.");
        prov_teardown(prov);
        return 0;
    }
    if ((prov->libctx = OSSL_LIB_CTX_new_child(handle, in)) == NULL) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "Cannot create the provider's child library context.");
        prov_teardown(prov);
        return 0;
    }
    *provctx = prov;
    *out = prov_dispatch;
    return 1;
}
