/* KEYMGMT for RSA and EC keys held in the HSM. A key is a reference string, the version the agent
 * pinned and the public key (parsed from the agent's SPKI in the child library context). Public parts
 * import and export (key matching, certificate checks); private parts never export, which is what
 * makes OpenSSL 3.0 use this provider's SIGNATURE and ASYM_CIPHER. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "hsmcert.h"

HSMCERT_KEY *hsmcert_key_up(HSMCERT_KEY *key)
{
    if (key != NULL)
        __atomic_add_fetch(&key->refs, 1, __ATOMIC_RELAXED);
    return key;
}

void hsmcert_key_free(HSMCERT_KEY *key)
{
    if (key == NULL || __atomic_sub_fetch(&key->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    EVP_PKEY_free(key->pub);
    free(key->ref);
    free(key->version);
    free(key);
}

static HSMCERT_KEY *key_new(HSMCERT_PROV *prov, int type)
{
    HSMCERT_KEY *key = calloc(1, sizeof(*key));

    if (key == NULL) {
        hsmcert_raise(prov, HSMCERT_R_INTERNAL, "Out of memory.");
        return NULL;
    }
    key->prov = prov;
    key->refs = 1;
    key->type = type;
    return key;
}

const char *hsmcert_key_type_name(const HSMCERT_KEY *key)
{
    return key->type == EVP_PKEY_EC ? "EC" : "RSA";
}

static char *dup_value(const HSMCERT_FRAME *f, int tag)
{
    char *s = malloc(f->len[tag] + 1);

    if (s != NULL) {
        memcpy(s, f->value[tag], f->len[tag]);
        s[f->len[tag]] = '\0';
    }
    return s;
}

HSMCERT_KEY *hsmcert_key_fetch(HSMCERT_PROV *prov, const char *ref)
{
    HSMCERT_FIELD field = { HSMCERT_TAG_KEYREF, ref, strlen(ref) };
    HSMCERT_REPLY reply;
    HSMCERT_KEY *key = NULL;
    const HSMCERT_FRAME *f = &reply.frame;
    const unsigned char *der;
    char err[HSMCERT_ERROR_MAX];
    int type;

    if (prov->bad_setting != NULL) {
        hsmcert_raise(prov, HSMCERT_R_CONFIG, "%s", prov->bad_setting);
        return NULL;
    }
    if (field.len > HSMCERT_KEYREF_MAX) {
        hsmcert_raise(prov, HSMCERT_R_BAD_ARGUMENT, "Cannot load the key " HSMCERT_REF_FMT
                      ": the key reference is longer than %d bytes.", HSMCERT_REF_ARG(ref), HSMCERT_KEYREF_MAX);
        return NULL;
    }
    if (!hsmcert_agent_call(prov->agent, HSMCERT_OP_PUBKEY, &field, 1, &reply, err, sizeof(err))) {
        hsmcert_raise(prov, HSMCERT_R_AGENT, "Cannot load the key " HSMCERT_REF_FMT ": %s", HSMCERT_REF_ARG(ref),
                      err);
        return NULL;
    }
    if (f->len[HSMCERT_TAG_KEYTYPE] == 3 && memcmp(f->value[HSMCERT_TAG_KEYTYPE], "RSA", 3) == 0) {
        type = EVP_PKEY_RSA;
    } else if (f->len[HSMCERT_TAG_KEYTYPE] == 2 && memcmp(f->value[HSMCERT_TAG_KEYTYPE], "EC", 2) == 0) {
        type = EVP_PKEY_EC;
    } else {
        hsmcert_raise(prov, HSMCERT_R_UNSUPPORTED, "The key " HSMCERT_REF_FMT " is neither RSA nor EC.",
                      HSMCERT_REF_ARG(ref));
        goto done;
    }
    if ((key = key_new(prov, type)) == NULL)
        goto done;
    der = f->value[HSMCERT_TAG_SPKI];
    key->pub = d2i_PUBKEY_ex(NULL, &der, (long)f->len[HSMCERT_TAG_SPKI], prov->libctx, HSMCERT_INNER_PROPQ);
    key->ref = strdup(ref);
    key->version = dup_value(f, HSMCERT_TAG_KEYVERSION);
    if (key->pub == NULL || key->ref == NULL || key->version == NULL
        || EVP_PKEY_get_base_id(key->pub) != type) {
        hsmcert_raise(prov, HSMCERT_R_AGENT, "The agent returned an unusable public key for " HSMCERT_REF_FMT ".",
                      HSMCERT_REF_ARG(ref));
        hsmcert_key_free(key);
        key = NULL;
    }
done:
    hsmcert_reply_clear(&reply);
    return key;
}

int hsmcert_key_to_object_cb(HSMCERT_KEY *key, OSSL_CALLBACK *cb, void *cbarg)
{
    OSSL_PARAM params[4];
    int object_type = OSSL_OBJECT_PKEY;

    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                                 (char *)hsmcert_key_type_name(key), 0);
    /* The reference is the key pointer itself; keymgmt load takes its own reference count. */
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &key, sizeof(key));
    params[3] = OSSL_PARAM_construct_end();
    return cb(params, cbarg);
}

/* ---- dispatch functions ---- */

static void *rsa_new(void *provctx)
{
    return key_new(provctx, EVP_PKEY_RSA);
}

static void *ec_new(void *provctx)
{
    return key_new(provctx, EVP_PKEY_EC);
}

static void km_free(void *keydata)
{
    hsmcert_key_free(keydata);
}

static void *load_typed(const void *reference, size_t size, int type)
{
    HSMCERT_KEY *key;

    if (reference == NULL || size != sizeof(HSMCERT_KEY *)) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "A key reference object of the wrong size (%zu bytes).", size);
        return NULL;
    }
    memcpy(&key, reference, sizeof(key));
    if (key == NULL || key->type != type) {
        hsmcert_raise(key != NULL ? key->prov : NULL, HSMCERT_R_INTERNAL, "The key reference object is not an %s "
                      "key.", type == EVP_PKEY_EC ? "EC" : "RSA");
        return NULL;
    }
    return hsmcert_key_up(key);
}

static void *rsa_load(const void *reference, size_t size)
{
    return load_typed(reference, size, EVP_PKEY_RSA);
}

static void *ec_load(const void *reference, size_t size)
{
    return load_typed(reference, size, EVP_PKEY_EC);
}

/* has and match answer a question: 0 is "no", not an error. */
static int km_has(const void *keydata, int selection)
{
    const HSMCERT_KEY *key = keydata;

    if (key == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_ALL) == 0)
        return 1;
    if (key->pub == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && key->ref == NULL)
        return 0;
    return 1;
}

static int km_match(const void *keydata1, const void *keydata2, int selection)
{
    const HSMCERT_KEY *a = keydata1, *b = keydata2;

    if (a == NULL || b == NULL || a->pub == NULL || b->pub == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !(selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
        && (a->ref == NULL || b->ref == NULL || strcmp(a->ref, b->ref) != 0))
        return 0;
    return EVP_PKEY_eq(a->pub, b->pub) == 1;
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    HSMCERT_KEY *key = keydata;
    EVP_PKEY_CTX *ctx;
    int ok;

    if (key == NULL || key->pub != NULL) {
        hsmcert_raise(key != NULL ? key->prov : NULL, HSMCERT_R_INTERNAL, "Import into a key that is not empty.");
        return 0;
    }
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
        /* A private key from elsewhere is not an HSM key: let another provider hold it. */
        hsmcert_raise(key->prov, HSMCERT_R_UNSUPPORTED, "The hsmcert provider holds only HSM keys.");
        return 0;
    }
    ctx = EVP_PKEY_CTX_new_from_name(key->prov->libctx, hsmcert_key_type_name(key), HSMCERT_INNER_PROPQ);
    ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1
         && EVP_PKEY_fromdata(ctx, &key->pub, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        hsmcert_raise(key->prov, HSMCERT_R_BAD_ARGUMENT, "The %s public key given to import is not valid.",
                      hsmcert_key_type_name(key));
    return ok;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    HSMCERT_KEY *key = keydata;
    OSSL_PARAM *params = NULL;
    int ok;

    if (key == NULL || key->pub == NULL) {
        hsmcert_raise(key != NULL ? key->prov : NULL, HSMCERT_R_BAD_ARGUMENT, "Export of an empty key.");
        return 0;
    }
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
        hsmcert_raise(key->prov, HSMCERT_R_NO_PRIVATE_EXPORT,
                      "The private key " HSMCERT_REF_FMT " stays in the HSM and cannot be exported.",
                      HSMCERT_REF_ARG(key->ref != NULL ? key->ref : "(public key)"));
        return 0;
    }
    if (EVP_PKEY_todata(key->pub, EVP_PKEY_PUBLIC_KEY, &params) != 1) {
        hsmcert_raise(key->prov, HSMCERT_R_INTERNAL, "Cannot export the public key.");
        return 0;
    }
    ok = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return ok;
}

static const OSSL_PARAM rsa_key_types[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM ec_key_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *rsa_types(int selection)
{
    return selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY ? NULL : rsa_key_types;
}

static const OSSL_PARAM *ec_types(int selection)
{
    return selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY ? NULL : ec_key_types;
}

/* The curve's own hash (ES256 on P-256, ES384 on P-384, ES512 on P-521) is an EC key's default digest,
 * as Azure pairs them; other hashes still work (the agent fits them to the curve, see signature.c). */
static const char *ec_digest(const HSMCERT_KEY *key)
{
    char group[64] = "";

    if (key->type != EVP_PKEY_EC
        || !EVP_PKEY_get_utf8_string_param(key->pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL))
        return NULL;
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 || strcmp(group, "secp256k1") == 0)
        return "SHA256";
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
        return "SHA384";
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
        return "SHA512";
    return NULL;
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    HSMCERT_KEY *key = keydata;
    const char *md;
    OSSL_PARAM *p;

    if (key == NULL || key->pub == NULL) {
        hsmcert_raise(key != NULL ? key->prov : NULL, HSMCERT_R_BAD_ARGUMENT, "Parameters of an empty key.");
        return 0;
    }
    /* bits, security-bits, max-size, default-digest and the public parts, as the default provider
     * computes them for the same public key. */
    if (!EVP_PKEY_get_params(key->pub, params)) {
        hsmcert_raise(key->prov, HSMCERT_R_BAD_ARGUMENT, "Cannot give the %s key's parameters asked for.",
                      hsmcert_key_type_name(key));
        return 0;
    }
    if ((md = ec_digest(key)) != NULL) {
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) != NULL
            && !OSSL_PARAM_set_utf8_string(p, md)) {
            hsmcert_raise(key->prov, HSMCERT_R_BAD_ARGUMENT, "The parameter %s has a type or size this provider "
                          "cannot fill.", p->key);
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM rsa_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM ec_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
    return rsa_gettable;
}

static const OSSL_PARAM *ec_gettable_params(void *provctx)
{
    return ec_gettable;
}

static const char *rsa_query_name(int operation_id)
{
    return "RSA";
}

static const char *ec_query_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? "ECDSA" : "EC";
}

#define FN(id, f) { OSSL_FUNC_KEYMGMT_##id, (void (*)(void))(f) }

const OSSL_DISPATCH hsmcert_rsa_keymgmt_functions[] = {
    FN(NEW, rsa_new), FN(FREE, km_free), FN(LOAD, rsa_load), FN(HAS, km_has), FN(MATCH, km_match),
    FN(IMPORT, km_import), FN(IMPORT_TYPES, rsa_types), FN(EXPORT, km_export), FN(EXPORT_TYPES, rsa_types),
    FN(GET_PARAMS, km_get_params), FN(GETTABLE_PARAMS, rsa_gettable_params),
    FN(QUERY_OPERATION_NAME, rsa_query_name), { 0, NULL },
};

const OSSL_DISPATCH hsmcert_ec_keymgmt_functions[] = {
    FN(NEW, ec_new), FN(FREE, km_free), FN(LOAD, ec_load), FN(HAS, km_has), FN(MATCH, km_match),
    FN(IMPORT, km_import), FN(IMPORT_TYPES, ec_types), FN(EXPORT, km_export), FN(EXPORT_TYPES, ec_types),
    FN(GET_PARAMS, km_get_params), FN(GETTABLE_PARAMS, ec_gettable_params),
    FN(QUERY_OPERATION_NAME, ec_query_name), { 0, NULL },
};
