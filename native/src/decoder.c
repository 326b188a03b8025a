/* DECODER for PEM files that wrap a key reference, for programs that read only PEM key files
 * (nginx 1.22, curl 7.88, haproxy 2.6, stunnel 5.68):
 *
 *   -----BEGIN HSMCERT KEY REFERENCE-----
 *   base64 of DER  SEQUENCE { UTF8String "hsmcert key reference v1", UTF8String reference }
 *   -----END HSMCERT KEY REFERENCE-----
 *
 * PEM -> DER (structure hsmcert-ref) -> RSA or EC key resolved through the agent like STORE does. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "hsmcert.h"

#define DESCRIPTION "hsmcert key reference v1"

static void *dec_newctx(void *provctx)
{
    return provctx; /* stateless: the provider context is enough */
}

static void dec_freectx(void *ctx)
{
}

static int pem_decode(void *ctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *object_cb,
                      void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HSMCERT_PROV *prov = ctx;
    BIO *in = BIO_new_from_core_bio(prov->libctx, cin);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int ret = 1; /* not ours: let the other decoders try */
    int ours;

    if (in == NULL) {
        hsmcert_raise(prov, HSMCERT_R_INTERNAL, "Out of memory.");
        return 0;
    }
    /* Only the PEM parsing of someone else's file is noise to discard; the errors of the key lookup
     * (agent unreachable, key not found...) must reach the user, so the mark ends before it. */
    ERR_set_mark();
    ours = PEM_read_bio(in, &name, &header, &data, &len) > 0 && strcmp(name, HSMCERT_PEM_LABEL) == 0;
    ERR_pop_to_mark();
    if (ours) {
        OSSL_PARAM params[3];

        params[0] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, data, (size_t)len);
        params[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE,
                                                     (char *)HSMCERT_DER_STRUCTURE, 0);
        params[2] = OSSL_PARAM_construct_end();
        ret = object_cb(params, object_cbarg);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(in);
    return ret;
}

/* One DER TLV of the given tag at *p; advances *p. Definite lengths up to 2 bytes. */
static int der_item(const unsigned char **p, const unsigned char *end, unsigned char tag,
                    const unsigned char **value, size_t *len)
{
    const unsigned char *q = *p;
    size_t n;

    if (end - q < 2 || q[0] != tag)
        return 0;
    n = q[1];
    q += 2;
    if (n == 0x81) {
        if (end - q < 1 || q[0] < 0x80)
            return 0;
        n = q[0];
        q += 1;
    } else if (n == 0x82) {
        if (end - q < 2 || q[0] == 0)
            return 0;
        n = ((size_t)q[0] << 8) | q[1];
        q += 2;
    } else if (n > 0x7F) {
        return 0;
    }
    if ((size_t)(end - q) < n)
        return 0;
    *value = q;
    *len = n;
    *p = q + n;
    return 1;
}

/* The reference inside the DER structure, as a new string, or NULL. */
static char *parse_ref(const unsigned char *der, size_t der_len)
{
    const unsigned char *p = der, *end = der + der_len, *seq, *desc, *ref;
    size_t seq_len, desc_len, ref_len;
    char *out;

    if (!der_item(&p, end, 0x30, &seq, &seq_len) || p != end)
        return NULL;
    p = seq;
    end = seq + seq_len;
    if (!der_item(&p, end, 0x0C, &desc, &desc_len) || !der_item(&p, end, 0x0C, &ref, &ref_len) || p != end)
        return NULL;
    if (desc_len != strlen(DESCRIPTION) || memcmp(desc, DESCRIPTION, desc_len) != 0 || ref_len == 0
        || memchr(ref, '\0', ref_len) != NULL)
        return NULL;
    if ((out = malloc(ref_len + 1)) == NULL)
        return NULL;
    memcpy(out, ref, ref_len);
    out[ref_len] = '\0';
    return out;
}

/* The DER structure is at most a reference of HSMCERT_KEYREF_MAX bytes and its short description. */
#define DER_MAX (HSMCERT_KEYREF_MAX + 64)

static int der_decode(HSMCERT_PROV *prov, int type, OSSL_CORE_BIO *cin, OSSL_CALLBACK *object_cb,
                      void *object_cbarg)
{
    BIO *in = BIO_new_from_core_bio(prov->libctx, cin);
    unsigned char *buf = malloc(DER_MAX + 1);
    size_t used = 0;
    int n, ret = 0;
    char *ref = NULL;
    HSMCERT_KEY *key = NULL;

    if (in == NULL || buf == NULL) {
        hsmcert_raise(prov, HSMCERT_R_INTERNAL, "Out of memory.");
        goto done;
    }
    while (used <= DER_MAX && (n = BIO_read(in, buf + used, (int)(DER_MAX + 1 - used))) > 0)
        used += (size_t)n;
    if (used > DER_MAX) {
        /* Only this provider's PEM decoder makes this structure: the file is an hsmcert reference. */
        hsmcert_raise(prov, HSMCERT_R_BAD_ARGUMENT, "The key reference in the PEM file is longer than %d bytes.",
                      HSMCERT_KEYREF_MAX);
        goto done;
    }
    if (used == 0 || (ref = parse_ref(buf, used)) == NULL) {
        ret = 1; /* not a reference: let the other decoders try */
        goto done;
    }
    /* The reference was ours: a key that cannot be loaded stops here with the agent's error. */
    if ((key = hsmcert_key_fetch(prov, ref)) != NULL)
        ret = key->type == type ? hsmcert_key_to_object_cb(key, object_cb, object_cbarg) : 1;
done:
    hsmcert_key_free(key);
    free(ref);
    free(buf);
    BIO_free(in);
    return ret;
}

static int der_rsa_decode(void *ctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *object_cb,
                          void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    return der_decode(ctx, EVP_PKEY_RSA, cin, object_cb, object_cbarg);
}

static int der_ec_decode(void *ctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *object_cb,
                         void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    return der_decode(ctx, EVP_PKEY_EC, cin, object_cb, object_cbarg);
}

const OSSL_DISPATCH hsmcert_pem_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))pem_decode },
    { 0, NULL },
};

const OSSL_DISPATCH hsmcert_der_rsa_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))der_rsa_decode },
    { 0, NULL },
};

const OSSL_DISPATCH hsmcert_der_ec_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))der_ec_decode },
    { 0, NULL },
};
