/* The agent protocol codec (docs/agent-protocol.md): pure, no I/O, no allocation. The shipped provider
 * exports none of it; the test-only library (native/test/codec_exports.c, `make -C native codec-test`)
 * exports it for the ctypes tests. */
#include <stdlib.h>
#include <string.h>

#include "hsmcert.h"

static const char *const reason_names[] = {
    "ok", "short", "length", "trailing", "version", "field-truncated", "duplicate-tag", "unknown-tag",
    "unknown-op", "missing-field", "unexpected-field", "bad-value", "unknown-status", "argument",
};

const char *hsmcert_frame_reason(int reason)
{
    if (reason < 0 || reason >= (int)(sizeof(reason_names) / sizeof(reason_names[0])))
        return "unknown";
    return reason_names[reason];
}

#define BIT(t) (1u << (t))

static const struct sign_alg {
    const char *name;
    int digest_len;
} sign_algs[] = {
    { "RS256", 32 }, { "RS384", 48 }, { "RS512", 64 }, { "PS256", 32 }, { "PS384", 48 },
    { "PS512", 64 }, { "ES256", 32 }, { "ES384", 48 }, { "ES512", 64 }, { "ES256K", 32 },
};
static const char *const decrypt_algs[] = { "RSA-OAEP", "RSA-OAEP-256" };

static int value_is(const unsigned char *v, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(v, name, len) == 0;
}

/* RSA signs a digest as long as its algorithm's hash; ECDSA any digest of 20 (SHA-1) to 64 (SHA-512) bytes,
 * which the agent brings to the algorithm's size (the ECDSA digest rule of hsmcert/jwa.py). */
static int digest_len_ok(const char *alg, int alg_len, size_t len)
{
    if (alg[0] == 'E')
        return len >= 20 && len <= 64;
    return len == (size_t)alg_len;
}

int hsmcert_frame_length(const unsigned char *header, size_t header_len, size_t *body_len)
{
    uint32_t n;

    if (header_len < HSMCERT_FRAME_HEADER)
        return HSMCERT_FR_SHORT;
    n = ((uint32_t)header[0] << 24) | ((uint32_t)header[1] << 16) | ((uint32_t)header[2] << 8) | header[3];
    if (n < HSMCERT_FRAME_MIN || n > HSMCERT_FRAME_MAX)
        return HSMCERT_FR_LENGTH;
    if (body_len != NULL)
        *body_len = n;
    return HSMCERT_FR_OK;
}

int hsmcert_frame_decode(const unsigned char *buf, size_t len, HSMCERT_FRAME *frame)
{
    size_t body_len, pos, end;
    int rc;

    if (frame == NULL || (buf == NULL && len != 0))
        return HSMCERT_FR_ARGUMENT;
    memset(frame, 0, sizeof(*frame));
    if ((rc = hsmcert_frame_length(buf, len, &body_len)) != HSMCERT_FR_OK)
        return rc;
    if (len - HSMCERT_FRAME_HEADER < body_len)
        return HSMCERT_FR_SHORT;
    if (len - HSMCERT_FRAME_HEADER > body_len)
        return HSMCERT_FR_TRAILING;
    frame->version = buf[4];
    frame->code = buf[5];
    if (frame->version != 1)
        return HSMCERT_FR_VERSION;
    end = len;
    pos = HSMCERT_FRAME_HEADER + 2;
    while (pos < end) {
        unsigned tag;
        size_t flen;

        if (end - pos < 3)
            return HSMCERT_FR_FIELD_TRUNCATED;
        tag = buf[pos];
        flen = ((size_t)buf[pos + 1] << 8) | buf[pos + 2];
        pos += 3;
        if (end - pos < flen)
            return HSMCERT_FR_FIELD_TRUNCATED;
        if (tag < 1 || tag > HSMCERT_TAG_MAX)
            return HSMCERT_FR_UNKNOWN_TAG;
        if (frame->present & BIT(tag))
            return HSMCERT_FR_DUPLICATE_TAG;
        frame->present |= BIT(tag);
        frame->value[tag] = buf + pos;
        frame->len[tag] = flen;
        pos += flen;
    }
    return HSMCERT_FR_OK;
}

/* Strict UTF-8 (as Python's decoder): no overlongs, no surrogates, nothing above U+10FFFF. */
static int utf8_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Non-empty text without control characters; ASCII only when ascii is set. */
static int text_ok(const HSMCERT_FRAME *f, int tag, int ascii)
{
    const unsigned char *v = f->value[tag];
    size_t len = f->len[tag];

    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < 0x20 || v[i] == 0x7F)
            return 0;
        if (ascii && v[i] >= 0x80)
            return 0;
    }
    return ascii || utf8_ok(v, len);
}

static int keyversion_ok(const HSMCERT_FRAME *f)
{
    size_t len = f->len[HSMCERT_TAG_KEYVERSION];

    if (len < 1 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = f->value[HSMCERT_TAG_KEYVERSION][i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

static const uint32_t required[5] = {
    0,
    BIT(HSMCERT_TAG_VERSIONS),
    BIT(HSMCERT_TAG_KEYREF),
    BIT(HSMCERT_TAG_KEYREF) | BIT(HSMCERT_TAG_ALG) | BIT(HSMCERT_TAG_DIGEST),
    BIT(HSMCERT_TAG_KEYREF) | BIT(HSMCERT_TAG_ALG) | BIT(HSMCERT_TAG_CIPHERTEXT),
};
static const uint32_t optional[5] = {
    0, BIT(HSMCERT_TAG_CLIENT), 0, BIT(HSMCERT_TAG_KEYVERSION), BIT(HSMCERT_TAG_KEYVERSION),
};
static const uint32_t response_fields[5] = {
    0,
    BIT(HSMCERT_TAG_VERSIONS) | BIT(HSMCERT_TAG_AGENT),
    BIT(HSMCERT_TAG_SPKI) | BIT(HSMCERT_TAG_KEYTYPE) | BIT(HSMCERT_TAG_KEYVERSION),
    BIT(HSMCERT_TAG_SIGNATURE),
    BIT(HSMCERT_TAG_PLAINTEXT),
};

int hsmcert_frame_check_request(const HSMCERT_FRAME *f)
{
    int op = f->code;
    const unsigned char *alg;
    size_t alg_len;

    if (op < HSMCERT_OP_HELLO || op > HSMCERT_OP_DECRYPT)
        return HSMCERT_FR_UNKNOWN_OP;
    if ((f->present & required[op]) != required[op])
        return HSMCERT_FR_MISSING_FIELD;
    if (f->present & ~(required[op] | optional[op]))
        return HSMCERT_FR_UNEXPECTED_FIELD;
    if (op == HSMCERT_OP_HELLO) {
        if (f->len[HSMCERT_TAG_VERSIONS] == 0)
            return HSMCERT_FR_BAD_VALUE;
        if ((f->present & BIT(HSMCERT_TAG_CLIENT)) && !text_ok(f, HSMCERT_TAG_CLIENT, 0))
            return HSMCERT_FR_BAD_VALUE;
        return HSMCERT_FR_OK;
    }
    if (!text_ok(f, HSMCERT_TAG_KEYREF, 0))
        return HSMCERT_FR_BAD_VALUE;
    if ((f->present & BIT(HSMCERT_TAG_KEYVERSION))
        && (!text_ok(f, HSMCERT_TAG_KEYVERSION, 1) || !keyversion_ok(f)))
        return HSMCERT_FR_BAD_VALUE;
    if (op == HSMCERT_OP_PUBKEY)
        return HSMCERT_FR_OK;
    if (!text_ok(f, HSMCERT_TAG_ALG, 1))
        return HSMCERT_FR_BAD_VALUE;
    alg = f->value[HSMCERT_TAG_ALG];
    alg_len = f->len[HSMCERT_TAG_ALG];
    if (op == HSMCERT_OP_SIGN) {
        for (size_t i = 0; i < sizeof(sign_algs) / sizeof(sign_algs[0]); i++)
            if (value_is(alg, alg_len, sign_algs[i].name))
                return digest_len_ok(sign_algs[i].name, sign_algs[i].digest_len, f->len[HSMCERT_TAG_DIGEST])
                           ? HSMCERT_FR_OK
                           : HSMCERT_FR_BAD_VALUE;
        return HSMCERT_FR_BAD_VALUE;
    }
    for (size_t i = 0; i < sizeof(decrypt_algs) / sizeof(decrypt_algs[0]); i++)
        if (value_is(alg, alg_len, decrypt_algs[i]))
            return f->len[HSMCERT_TAG_CIPHERTEXT] ? HSMCERT_FR_OK : HSMCERT_FR_BAD_VALUE;
    return HSMCERT_FR_BAD_VALUE;
}

int hsmcert_frame_check_response(const HSMCERT_FRAME *f, int op)
{
    if (f->code > HSMCERT_ST_INTERNAL)
        return HSMCERT_FR_UNKNOWN_STATUS;
    if (f->code != HSMCERT_ST_OK) {
        if (!(f->present & BIT(HSMCERT_TAG_MESSAGE)))
            return HSMCERT_FR_MISSING_FIELD;
        if (f->present != BIT(HSMCERT_TAG_MESSAGE))
            return HSMCERT_FR_UNEXPECTED_FIELD;
        return text_ok(f, HSMCERT_TAG_MESSAGE, 0) ? HSMCERT_FR_OK : HSMCERT_FR_BAD_VALUE;
    }
    if (op < HSMCERT_OP_HELLO || op > HSMCERT_OP_DECRYPT)
        return HSMCERT_FR_OK;
    if (f->present & ~response_fields[op])
        return HSMCERT_FR_UNEXPECTED_FIELD;
    if ((f->present & response_fields[op]) != response_fields[op])
        return HSMCERT_FR_MISSING_FIELD;
    if (op == HSMCERT_OP_HELLO && f->len[HSMCERT_TAG_VERSIONS] != 1)
        return HSMCERT_FR_BAD_VALUE;
    return HSMCERT_FR_OK;
}

long hsmcert_frame_encode(int code, const HSMCERT_FIELD *fields, size_t nfields, unsigned char *out,
                          size_t cap)
{
    size_t body = 2, pos;

    if (code < 0 || code > 255 || (nfields > 0 && fields == NULL))
        return -HSMCERT_FR_ARGUMENT;
    for (size_t i = 0; i < nfields; i++) {
        if (fields[i].tag < 1 || fields[i].tag > HSMCERT_TAG_MAX || fields[i].len > 0xFFFF
            || (fields[i].len > 0 && fields[i].value == NULL))
            return -HSMCERT_FR_ARGUMENT;
        body += 3 + fields[i].len;
        if (body > HSMCERT_FRAME_MAX)
            return -HSMCERT_FR_LENGTH;
    }
    if (out == NULL || cap < HSMCERT_FRAME_HEADER + body)
        return -HSMCERT_FR_ARGUMENT;
    out[0] = (unsigned char)(body >> 24);
    out[1] = (unsigned char)(body >> 16);
    out[2] = (unsigned char)(body >> 8);
    out[3] = (unsigned char)body;
    out[4] = 1;
    out[5] = (unsigned char)code;
    pos = 6;
    for (size_t i = 0; i < nfields; i++) {
        out[pos] = fields[i].tag;
        out[pos + 1] = (unsigned char)(fields[i].len >> 8);
        out[pos + 2] = (unsigned char)fields[i].len;
        if (fields[i].len)
            memcpy(out + pos + 3, fields[i].value, fields[i].len);
        pos += 3 + fields[i].len;
    }
    return (long)pos;
}
