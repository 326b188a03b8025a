/* SIGNATURE for RSA (PKCS#1 v1.5, PSS with salt = digest length) and ECDSA. The message is hashed
 * locally with the default provider's digests (child library context); only the digest goes to the
 * agent. Verification is local with the public key. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "hsmcert.h"

#define SALT_UNSET (-100)

typedef struct {
    HSMCERT_PROV *prov;
    HSMCERT_KEY *key;
    int ecdsa;
    EVP_MD *md;
    EVP_MD_CTX *mdctx;
    int pad; /* RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
    int saltlen; /* SALT_UNSET, RSA_PSS_SALTLEN_* or a byte count */
    EVP_MD *mgf1;
    unsigned char aid[128];
    size_t aid_len;
} SIG_CTX;

static void *sig_newctx(void *provctx, const char *propq, int ecdsa)
{
    SIG_CTX *ctx = calloc(1, sizeof(*ctx));

    if (ctx == NULL) {
        hsmcert_raise(provctx, HSMCERT_R_INTERNAL, "Out of memory.");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->ecdsa = ecdsa;
    ctx->pad = RSA_PKCS1_PADDING;
    ctx->saltlen = SALT_UNSET;
    return ctx;
}

static void *rsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, propq, 0);
}

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, propq, 1);
}

static void sig_freectx(void *vctx)
{
    SIG_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    hsmcert_key_free(ctx->key);
    EVP_MD_free(ctx->md);
    EVP_MD_free(ctx->mgf1);
    EVP_MD_CTX_free(ctx->mdctx);
    free(ctx);
}

static void *sig_dupctx(void *vctx)
{
    SIG_CTX *src = vctx, *dst = malloc(sizeof(*dst));

    if (dst == NULL) {
        hsmcert_raise(src->prov, HSMCERT_R_INTERNAL, "Out of memory.");
        return NULL;
    }
    *dst = *src;
    dst->mdctx = NULL;
    hsmcert_key_up(dst->key);
    if (dst->md != NULL)
        EVP_MD_up_ref(dst->md);
    if (dst->mgf1 != NULL)
        EVP_MD_up_ref(dst->mgf1);
    if (src->mdctx != NULL
        && ((dst->mdctx = EVP_MD_CTX_new()) == NULL || !EVP_MD_CTX_copy_ex(dst->mdctx, src->mdctx))) {
        hsmcert_raise(src->prov, HSMCERT_R_INTERNAL, "Cannot copy the digest state.");
        sig_freectx(dst);
        return NULL;
    }
    return dst;
}

/* Only SHA-256/384/512: the hashes of the HSM's algorithms. */
static EVP_MD *fetch_md(SIG_CTX *ctx, const char *name)
{
    EVP_MD *md = EVP_MD_fetch(ctx->prov->libctx, name, HSMCERT_INNER_PROPQ);

    if (md == NULL || !(EVP_MD_is_a(md, "SHA2-256") || EVP_MD_is_a(md, "SHA2-384")
                        || EVP_MD_is_a(md, "SHA2-512"))) {
        hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED,
                      "The HSM signs SHA-256, SHA-384 or SHA-512 digests, not %s.", name);
        EVP_MD_free(md);
        return NULL;
    }
    return md;
}

static int set_md(SIG_CTX *ctx, const char *name)
{
    EVP_MD *md = fetch_md(ctx, name);

    if (md == NULL)
        return 0;
    EVP_MD_free(ctx->md);
    ctx->md = md;
    return 1;
}

/* -sigopt rsa_pss_saltlen:N: "digest", "max", "auto", a byte count or OpenSSL's -1/-2/-3 for those names. */
static int parse_saltlen(SIG_CTX *ctx, const char *text, int *salt)
{
    char *end = NULL;
    long value;

    if (strcmp(text, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0) {
        *salt = RSA_PSS_SALTLEN_DIGEST;
        return 1;
    }
    if (strcmp(text, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0) {
        *salt = RSA_PSS_SALTLEN_MAX;
        return 1;
    }
    if (strcmp(text, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0) {
        *salt = RSA_PSS_SALTLEN_AUTO;
        return 1;
    }
    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < -3 || value > 16384) {
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT,
                      "The RSA-PSS salt length %.40s is not digest, max, auto or a byte count.", text);
        return 0;
    }
    *salt = (int)value;
    return 1;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;
    const OSSL_PARAM *p = NULL;
    char name[64], *pn = name;

    if (ctx == NULL) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "No signature context.");
        return 0;
    }
    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
        if (!OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
            goto bad;
        if (!set_md(ctx, name))
            return 0; /* raised by fetch_md */
    }
    if (ctx->ecdsa)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        int pad = 0;

        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
                goto bad;
            pad = strcasecmp(name, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                  : strcasecmp(name, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0   ? RSA_PKCS1_PSS_PADDING
                                                                         : 0;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            goto bad;
        }
        if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING) {
            hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED,
                          "The HSM signs with RSA PKCS#1 v1.5 or PSS padding only.");
            return 0;
        }
        ctx->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
        int salt;

        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
                goto bad;
            if (!parse_saltlen(ctx, name, &salt))
                return 0;
        } else if (!OSSL_PARAM_get_int(p, &salt)) {
            goto bad;
        }
        ctx->saltlen = salt;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        EVP_MD *md;

        if (!OSSL_PARAM_get_utf8_string(p, &pn, sizeof(name)))
            goto bad;
        if ((md = fetch_md(ctx, name)) == NULL)
            return 0;
        EVP_MD_free(ctx->mgf1);
        ctx->mgf1 = md;
    }
    return 1;
bad:
    hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "The signature parameter %s has a value of the wrong type "
                  "or length.", p->key);
    return 0;
}

static int sig_init(SIG_CTX *ctx, void *vkey, const OSSL_PARAM params[])
{
    HSMCERT_KEY *key = vkey;

    if (key != NULL) {
        if (key->pub == NULL || (key->type == EVP_PKEY_EC) != ctx->ecdsa) {
            hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "%s is not a signature for this %s key.",
                          ctx->ecdsa ? "ECDSA" : "RSA", key->pub == NULL ? "empty" : hsmcert_key_type_name(key));
            return 0;
        }
        hsmcert_key_free(ctx->key);
        ctx->key = hsmcert_key_up(key);
    }
    if (ctx->key == NULL) {
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "No key was given to sign or verify with.");
        return 0;
    }
    return sig_set_ctx_params(ctx, params);
}

static int sign_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    return sig_init(vctx, vkey, params);
}

/* The JWA name of an ECDSA signature with this key: its curve's (ES256 on P-256, ES256K on secp256k1, ES384
 * on P-384, ES512 on P-521), whatever hash made the digest. The digest goes to the agent as it is; the agent
 * brings it to the curve's size as ECDSA does (the ECDSA digest rule of hsmcert/jwa.py, docs/agent-protocol.md),
 * so TLS 1.2 may ask for SHA-384 with a P-256 key. NULL with an error raised for another curve. */
static const char *ecdsa_alg(SIG_CTX *ctx)
{
    char group[64] = "";

    EVP_PKEY_get_utf8_string_param(ctx->key->pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
        return "ES256";
    if (strcmp(group, "secp256k1") == 0)
        return "ES256K";
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
        return "ES384";
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
        return "ES512";
    hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED, "The HSM has no ECDSA for the curve %s.", group);
    return NULL;
}

/* JWA name of this signature, or NULL with an error raised. */
static const char *jwa_name(SIG_CTX *ctx, size_t digest_len)
{
    static const char *const names[2][3] = { { "RS256", "RS384", "RS512" }, { "PS256", "PS384", "PS512" } };
    int row = ctx->pad == RSA_PKCS1_PSS_PADDING ? 1 : 0;
    int col = digest_len == 32 ? 0 : digest_len == 48 ? 1 : digest_len == 64 ? 2 : -1;
    size_t md_len = ctx->md != NULL ? (size_t)EVP_MD_get_size(ctx->md) : digest_len;

    if (md_len != digest_len) {
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "A %zu-byte digest is not a %s digest.", digest_len,
                      EVP_MD_get0_name(ctx->md));
        return NULL;
    }
    if (ctx->ecdsa)
        return ecdsa_alg(ctx); /* the agent checks the digest's length */
    if (col < 0) {
        hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT,
                      "A %zu-byte digest is not a SHA-256, SHA-384 or SHA-512 digest.", digest_len);
        return NULL;
    }
    if (row == 1) {
        if (ctx->saltlen != SALT_UNSET && ctx->saltlen != RSA_PSS_SALTLEN_DIGEST
            && ctx->saltlen != (int)digest_len) {
            hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED,
                          "The HSM signs RSA-PSS with a salt as long as the digest (%zu bytes); use "
                          "-sigopt rsa_pss_saltlen:digest.", digest_len);
            return NULL;
        }
        if (ctx->mgf1 != NULL && (size_t)EVP_MD_get_size(ctx->mgf1) != digest_len) {
            hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED, "The HSM uses MGF1 with the signature's digest.");
            return NULL;
        }
    }
    return names[row][col];
}

static int sign_digest(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                       const unsigned char *tbs, size_t tbslen)
{
    SIG_CTX *ctx = vctx;
    HSMCERT_KEY *key = ctx->key;
    HSMCERT_FIELD fields[4];
    HSMCERT_REPLY reply;
    size_t n = 0, max = (size_t)EVP_PKEY_get_size(key->pub);
    const char *alg;
    char err[HSMCERT_ERROR_MAX];
    int ok = 0;

    if (sig == NULL) {
        *siglen = max;
        return 1;
    }
    if (key->ref == NULL) {
        hsmcert_raise(ctx->prov, HSMCERT_R_UNSUPPORTED, "This public key has no HSM key to sign with.");
        return 0;
    }
    if ((alg = jwa_name(ctx, tbslen)) == NULL)
        return 0;
    fields[n++] = (HSMCERT_FIELD){ HSMCERT_TAG_KEYREF, key->ref, strlen(key->ref) };
    fields[n++] = (HSMCERT_FIELD){ HSMCERT_TAG_KEYVERSION, key->version, strlen(key->version) };
    fields[n++] = (HSMCERT_FIELD){ HSMCERT_TAG_ALG, alg, strlen(alg) };
    fields[n++] = (HSMCERT_FIELD){ HSMCERT_TAG_DIGEST, tbs, tbslen };
    if (!hsmcert_agent_call(ctx->prov->agent, HSMCERT_OP_SIGN, fields, n, &reply, err, sizeof(err))) {
        hsmcert_raise(ctx->prov, HSMCERT_R_AGENT, "Signing with " HSMCERT_REF_FMT " failed: %s",
                      HSMCERT_REF_ARG(key->ref), err);
        return 0;
    }
    if (reply.frame.len[HSMCERT_TAG_SIGNATURE] > sigsize || reply.frame.len[HSMCERT_TAG_SIGNATURE] > max) {
        hsmcert_raise(ctx->prov, HSMCERT_R_AGENT, "The signature from the agent does not fit.");
    } else {
        memcpy(sig, reply.frame.value[HSMCERT_TAG_SIGNATURE], reply.frame.len[HSMCERT_TAG_SIGNATURE]);
        *siglen = reply.frame.len[HSMCERT_TAG_SIGNATURE];
        ok = 1;
    }
    hsmcert_reply_clear(&reply);
    return ok;
}

static int verify_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    return sig_init(vctx, vkey, params);
}

/* 0 when the signature does not verify (an answer, as with the default provider) or cannot be checked. */
static int verify_digest(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                         size_t tbslen)
{
    SIG_CTX *ctx = vctx;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, HSMCERT_INNER_PROPQ);
    int ok = pctx != NULL && EVP_PKEY_verify_init(pctx) == 1;

    if (ok && ctx->md != NULL)
        ok = EVP_PKEY_CTX_set_signature_md(pctx, ctx->md) == 1;
    if (ok && !ctx->ecdsa) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, ctx->pad) == 1;
        if (ok && ctx->pad == RSA_PKCS1_PSS_PADDING) {
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, ctx->saltlen == SALT_UNSET ? RSA_PSS_SALTLEN_AUTO
                                                                                   : ctx->saltlen) == 1;
            if (ok && ctx->mgf1 != NULL)
                ok = EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, ctx->mgf1) == 1;
        }
    }
    if (ok)
        ok = EVP_PKEY_verify(pctx, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

static int digest_init(void *vctx, const char *mdname, void *vkey, const OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;

    if (!sig_init(ctx, vkey, params))
        return 0;
    if (mdname != NULL && *mdname != '\0') {
        if (!set_md(ctx, mdname))
            return 0;
    } else if (ctx->md == NULL && !set_md(ctx, "SHA256")) {
        return 0;
    }
    if ((ctx->mdctx == NULL && (ctx->mdctx = EVP_MD_CTX_new()) == NULL)
        || !EVP_DigestInit_ex2(ctx->mdctx, ctx->md, NULL)) {
        hsmcert_raise(ctx->prov, HSMCERT_R_INTERNAL, "Cannot start the %s digest.", EVP_MD_get0_name(ctx->md));
        return 0;
    }
    return 1;
}

static int digest_update(void *vctx, const unsigned char *data, size_t datalen)
{
    SIG_CTX *ctx = vctx;

    if (ctx->mdctx == NULL || !EVP_DigestUpdate(ctx->mdctx, data, datalen)) {
        hsmcert_raise(ctx->prov, HSMCERT_R_INTERNAL, "The digest was not started or cannot take more data.");
        return 0;
    }
    return 1;
}

static int digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    SIG_CTX *ctx = vctx;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (sig == NULL)
        return sign_digest(ctx, NULL, siglen, 0, NULL, 0);
    if (ctx->mdctx == NULL || !EVP_DigestFinal_ex(ctx->mdctx, digest, &dlen)) {
        hsmcert_raise(ctx->prov, HSMCERT_R_INTERNAL, "The digest was not started or cannot be finished.");
        return 0;
    }
    return sign_digest(ctx, sig, siglen, sigsize, digest, dlen);
}

static int digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    SIG_CTX *ctx = vctx;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (ctx->mdctx == NULL || !EVP_DigestFinal_ex(ctx->mdctx, digest, &dlen)) {
        hsmcert_raise(ctx->prov, HSMCERT_R_INTERNAL, "The digest was not started or cannot be finished.");
        return 0;
    }
    return verify_digest(ctx, sig, siglen, digest, dlen);
}

/* The DER AlgorithmIdentifier of the signature this context makes (X.509, CSR, CRL signing). */
static int compute_aid(SIG_CTX *ctx)
{
    X509_ALGOR *alg = X509_ALGOR_new();
    unsigned char *der = NULL;
    int len, ok = 0, md_nid;

    if (alg == NULL || ctx->md == NULL)
        goto done;
    md_nid = EVP_MD_get_type(ctx->md);
    if (ctx->ecdsa) {
        int nid = md_nid == NID_sha256 ? NID_ecdsa_with_SHA256 : md_nid == NID_sha384 ? NID_ecdsa_with_SHA384
                                                                                      : NID_ecdsa_with_SHA512;
        ok = X509_ALGOR_set0(alg, OBJ_nid2obj(nid), V_ASN1_UNDEF, NULL);
    } else if (ctx->pad == RSA_PKCS1_PADDING) {
        int nid = md_nid == NID_sha256   ? NID_sha256WithRSAEncryption
                  : md_nid == NID_sha384 ? NID_sha384WithRSAEncryption
                                         : NID_sha512WithRSAEncryption;
        ok = X509_ALGOR_set0(alg, OBJ_nid2obj(nid), V_ASN1_NULL, NULL);
    } else {
        RSA_PSS_PARAMS *pss = RSA_PSS_PARAMS_new();
        X509_ALGOR *hash = X509_ALGOR_new();
        ASN1_STRING *hash_der = NULL, *pss_der = NULL;

        ok = pss != NULL && hash != NULL && (pss->hashAlgorithm = X509_ALGOR_new()) != NULL
             && (pss->maskGenAlgorithm = X509_ALGOR_new()) != NULL
             && (pss->saltLength = ASN1_INTEGER_new()) != NULL;
        if (ok) {
            X509_ALGOR_set_md(pss->hashAlgorithm, ctx->md);
            X509_ALGOR_set_md(hash, ctx->md);
            ok = ASN1_INTEGER_set(pss->saltLength, EVP_MD_get_size(ctx->md))
                 && ASN1_item_pack(hash, ASN1_ITEM_rptr(X509_ALGOR), &hash_der) != NULL
                 && X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1), V_ASN1_SEQUENCE, hash_der);
            if (!ok)
                ASN1_STRING_free(hash_der);
        }
        if (ok) {
            ok = ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), &pss_der) != NULL
                 && X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, pss_der);
            if (!ok)
                ASN1_STRING_free(pss_der);
        }
        X509_ALGOR_free(hash);
        RSA_PSS_PARAMS_free(pss);
    }
    if (ok && (len = i2d_X509_ALGOR(alg, &der)) > 0 && (size_t)len <= sizeof(ctx->aid)) {
        memcpy(ctx->aid, der, (size_t)len);
        ctx->aid_len = (size_t)len;
    } else {
        ok = 0;
    }
done:
    OPENSSL_free(der);
    X509_ALGOR_free(alg);
    return ok;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;
    OSSL_PARAM *p;

    if (ctx == NULL) {
        hsmcert_raise(NULL, HSMCERT_R_INTERNAL, "No signature context.");
        return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
        if (ctx->key != NULL && ctx->md != NULL && jwa_name(ctx, (size_t)EVP_MD_get_size(ctx->md)) == NULL)
            return 0; /* raised by jwa_name */
        if (!compute_aid(ctx)) {
            hsmcert_raise(ctx->prov, HSMCERT_R_INTERNAL, "No AlgorithmIdentifier for this signature (no digest "
                          "chosen yet?).");
            return 0;
        }
        if (!OSSL_PARAM_set_octet_string(p, ctx->aid, ctx->aid_len))
            goto bad;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, ctx->md != NULL ? EVP_MD_get0_name(ctx->md) : ""))
        goto bad;
    if (!ctx->ecdsa) {
        if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
            if (p->data_type == OSSL_PARAM_INTEGER ? !OSSL_PARAM_set_int(p, ctx->pad)
                : !OSSL_PARAM_set_utf8_string(p, ctx->pad == RSA_PKCS1_PSS_PADDING
                                                     ? OSSL_PKEY_RSA_PAD_MODE_PSS
                                                     : OSSL_PKEY_RSA_PAD_MODE_PKCSV15))
                goto bad;
        }
        if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
            int salt = ctx->md != NULL ? EVP_MD_get_size(ctx->md) : RSA_PSS_SALTLEN_DIGEST;

            if (p->data_type == OSSL_PARAM_INTEGER ? !OSSL_PARAM_set_int(p, salt)
                : !OSSL_PARAM_set_utf8_string(p, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST))
                goto bad;
        }
        if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
            const EVP_MD *m = ctx->mgf1 != NULL ? ctx->mgf1 : ctx->md;

            if (!OSSL_PARAM_set_utf8_string(p, m != NULL ? EVP_MD_get0_name(m) : ""))
                goto bad;
        }
    }
    return 1;
bad:
    hsmcert_raise(ctx->prov, HSMCERT_R_BAD_ARGUMENT, "The signature parameter %s has a type or size this "
                  "provider cannot fill.", p->key);
    return 0;
}

static const OSSL_PARAM rsa_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM ecdsa_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM rsa_gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM ecdsa_gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *rsa_settable_params(void *vctx, void *provctx)
{
    return rsa_settable;
}

static const OSSL_PARAM *ecdsa_settable_params(void *vctx, void *provctx)
{
    return ecdsa_settable;
}

static const OSSL_PARAM *rsa_gettable_params(void *vctx, void *provctx)
{
    return rsa_gettable;
}

static const OSSL_PARAM *ecdsa_gettable_params(void *vctx, void *provctx)
{
    return ecdsa_gettable;
}

#define FN(id, f) { OSSL_FUNC_SIGNATURE_##id, (void (*)(void))(f) }
#define COMMON_FNS                                                                                        \
    FN(FREECTX, sig_freectx), FN(DUPCTX, sig_dupctx), FN(SIGN_INIT, sign_init), FN(SIGN, sign_digest),    \
        FN(VERIFY_INIT, verify_init), FN(VERIFY, verify_digest), FN(DIGEST_SIGN_INIT, digest_init),       \
        FN(DIGEST_SIGN_UPDATE, digest_update), FN(DIGEST_SIGN_FINAL, digest_sign_final),                  \
        FN(DIGEST_VERIFY_INIT, digest_init), FN(DIGEST_VERIFY_UPDATE, digest_update),                     \
        FN(DIGEST_VERIFY_FINAL, digest_verify_final), FN(GET_CTX_PARAMS, sig_get_ctx_params),             \
        FN(SET_CTX_PARAMS, sig_set_ctx_params)

const OSSL_DISPATCH hsmcert_rsa_signature_functions[] = {
    FN(NEWCTX, rsa_newctx), COMMON_FNS, FN(SETTABLE_CTX_PARAMS, rsa_settable_params),
    FN(GETTABLE_CTX_PARAMS, rsa_gettable_params), { 0, NULL },
};

const OSSL_DISPATCH hsmcert_ecdsa_signature_functions[] = {
    FN(NEWCTX, ecdsa_newctx), COMMON_FNS, FN(SETTABLE_CTX_PARAMS, ecdsa_settable_params),
    FN(GETTABLE_CTX_PARAMS, ecdsa_gettable_params), { 0, NULL },
};
