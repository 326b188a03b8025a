/* ASYM_CIPHER: RSA-OAEP decryption in the HSM (SHA-1 -> RSA-OAEP, SHA-256 -> RSA-OAEP-256, MGF1 with
 * the same digest, no label). Encryption is local with the public key. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "hsmcert.h"

typedef struct {
    HSMCERT_PROV *prov;
    HSMCERT_KEY *key;
    int pad;
    char md[32];
    char mgf1[32];
    int label; /* a non-empty OAEP label was set */
} CIPHER_CTX;

static void *ac_newctx(void *provctx)
{
    CIPHER_CTX *ctx = calloc(1, sizeof(*ctx));

    if (ctx == NULL) {
        hsmcert_raise(provctx, HSMCERT_R_INTERNAL, "Out of memory.");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->pad = RSA_PKCS1_PADDING;
    strcpy(ctx->md, "SHA1");
    return ctx;
}

static void ac_freectx(void *vctx)
{
    CIPHER_CTX *ctx = vctx;

    if (ctx != NULL) {
        hsmcert_key_free(ctx->key);
        free(ctx);
    }
}

static void *ac_dupctx(void *vctx)
{
    CIPHER_CTX *src = vctx, *dst = malloc(sizeof(*dst));

    if (dst == NULL) {
        hsmcert_raise(src->prov, HSMCERT_R_INTERNAL, "Out of memory.");
        return NULL;
    }
    *dst = *src;
    hsmcert_key_up(dst->key);
    return dst;
}

static int ac_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    CIPHER_CTX *ctx = vctx;
    const OSSL_PARAM *p = NULL;
    char name[32], *pn = name;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        int pad = 0;

        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
                goto bad;
            pad = strcasecmp(name, OSSL_PKEY_RSA_PAD_MODE_OAEP) == 0 ? RSA_PKCS1_OAEP_PADDING
                  : strcasecmp(name, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING : -1;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            goto bad;
        }
        ctx->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL
        && !OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
        goto bad;
    else if (p != NULL)
        strcpy(ctx->md, name);
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL
        && !OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
        goto bad;
    else if (p != NULL)
        strcpy(ctx->mgf1, name);
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL)
        ctx->label = p->data_size > 0;
    return 1;
bad:
    hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "The decryption parameter %s has a value of the wrong type "
                  "or length.", p->key);
    return 0;
}

static int ac_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    CIPHER_CTX *ctx = vctx;
    HSMCERT_KEY *key = vkey;

    if (key == NULL || key->type != EVP_PKEY_RSA || key->pub == NULL) {
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "RSA encryption and decryption need an RSA key.");
        return 0;
    }
    hsmcert_key_free(ctx->key);
    ctx->key = hsmcert_key_up(key);
    return ac_set_ctx_params(ctx, params);
}

static int is_md(CIPHER_CTX *ctx, const char *name, const char *want)
{
    EVP_MD *md = EVP_MD_fetch(ctx->prov->libctx, name, HSMCERT_INNER_PROPQ);
    int yes = md != NULL && EVP_MD_is_a(md, want);

    EVP_MD_free(md);
    return yes;
}

static int ac_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize, const unsigned char *in,
                      size_t inlen)
{
    CIPHER_CTX *ctx = vctx;
    HSMCERT_KEY *key = ctx->key;
    HSMCERT_FIELD fields[4];
    HSMCERT_REPLY reply;
    const char *alg;
    char err[HSMCERT_ERROR_MAX];
    size_t plen;
    int ok = 0;

    if (out == NULL) {
        *outlen = (size_t)EVP_PKEY_get_size(key->pub);
        return 1;
    }
    if (ctx->pad != RSA_PKCS1_OAEP_PADDING || ctx->label || key->ref == NULL) {
        hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED,
                      "The HSM decrypts RSA-OAEP without a label only (use -pkeyopt rsa_padding_mode:oaep).");
        return 0;
    }
    if (is_md(ctx, ctx->md, "SHA1"))
        alg = "RSA-OAEP";
    else if (is_md(ctx, ctx->md, "SHA2-256"))
        alg = "RSA-OAEP-256";
    else {
        hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED, "The HSM decrypts RSA-OAEP with SHA-1 or SHA-256 only.");
        return 0;
    }
    if (ctx->mgf1[0] != '\0' && !is_md(ctx, ctx->mgf1, ctx->md)) {
        hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED, "The HSM uses MGF1 with the OAEP digest.");
        return 0;
    }
    fields[0] = (HSMCERT_FIELD){ HSMCERT_TAG_KEYREF, key->ref, strlen(key->ref) };
    fields[1] = (HSMCERT_FIELD){ HSMCERT_TAG_KEYVERSION, key->version, strlen(key->version) };
    fields[2] = (HSMCERT_FIELD){ HSMCERT_TAG_ALG, alg, strlen(alg) };
    fields[3] = (HSMCERT_FIELD){ HSMCERT_TAG_CIPHERTEXT, in, inlen };
    if (!hsmcert_agent_call(ctx->prov->agent, HSMCERT_OP_DECRYPT, fields, 4, &reply, err, sizeof(err))) {
        hsmcert_raise(ctx->prov, HSMCERT_R_AGENT, "Decrypting with " HSMCERT_REF_FMT " failed: %s",
                      HSMCERT_REF_ARG(key->ref), err);
        return 0;
    }
    plen = reply.frame.len[HSMCERT_TAG_PLAINTEXT];
    if (plen > outsize) {
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "The output buffer is too small.");
    } else {
        if (plen)
            memcpy(out, reply.frame.value[HSMCERT_TAG_PLAINTEXT], plen);
        *outlen = plen;
        ok = 1;
    }
    hsmcert_reply_clear(&reply);
    return ok;
}

static int ac_encrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize, const unsigned char *in,
                      size_t inlen)
{
    CIPHER_CTX *ctx = vctx;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, HSMCERT_INNER_PROPQ);
    int ok = pctx != NULL && EVP_PKEY_encrypt_init(pctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(pctx, ctx->pad) == 1;

    if (ok && ctx->pad == RSA_PKCS1_OAEP_PADDING) {
        ok = EVP_PKEY_CTX_set_rsa_oaep_md_name(pctx, ctx->md, NULL) == 1
             && (ctx->mgf1[0] == '\0' || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, ctx->mgf1, NULL) == 1);
    }
    *outlen = outsize;
    if (ok)
        ok = EVP_PKEY_encrypt(pctx, out, outlen, in, inlen) == 1;
    EVP_PKEY_CTX_free(pctx);
    if (!ok)
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "Encrypting with the RSA public key failed.");
    return ok;
}

static int ac_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    CIPHER_CTX *ctx = vctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        if (p->data_type == OSSL_PARAM_INTEGER ? !OSSL_PARAM_set_int(p, ctx->pad)
            : !OSSL_PARAM_set_utf8_string(p, ctx->pad == RSA_PKCS1_OAEP_PADDING ? OSSL_PKEY_RSA_PAD_MODE_OAEP
                                                                              : OSSL_PKEY_RSA_PAD_MODE_PKCSV15))
            goto bad;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, ctx->md))
        goto bad;
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, ctx->mgf1[0] ? ctx->mgf1 : ctx->md))
        goto bad;
    return 1;
bad:
    hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "The decryption parameter %s has a type or size this "
                  "provider cannot fill.", p->key);
    return 0;
}

static const OSSL_PARAM ac_params[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *ac_param_table(void *vctx, void *provctx)
{
    return ac_params;
}

#define FN(id, f) { OSSL_FUNC_ASYM_CIPHER_##id, (void (*)(void))(f) }

const OSSL_DISPATCH hsmcert_rsa_asym_cipher_functions[] = {
    FN(NEWCTX, ac_newctx), FN(FREECTX, ac_freectx), FN(DUPCTX, ac_dupctx),
    FN(DECRYPT_INIT, ac_init), FN(DECRYPT, ac_decrypt), FN(ENCRYPT_INIT, ac_init), FN(ENCRYPT, ac_encrypt),
    FN(GET_CTX_PARAMS, ac_get_ctx_params), FN(GETTABLE_CTX_PARAMS, ac_param_table),
    FN(SET_CTX_PARAMS, ac_set_ctx_params), FN(SETTABLE_CTX_PARAMS, ac_param_table), { 0, NULL },
};
