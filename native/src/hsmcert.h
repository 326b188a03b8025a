/* hsmcert OpenSSL provider: shared declarations.
 *
 * One file per OpenSSL operation (provider.c, store.c, decoder.c, keymgmt.c, signature.c,
 * asym_cipher.c), the agent protocol codec (frame.c, pure) and the agent socket client (agent.c).
 */
#ifndef HSMCERT_H
#define HSMCERT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/macros.h>
#include <openssl/evp.h>

/* The shipped provider exports OSSL_provider_init only (everything else is built hidden). */
#define HSMCERT_EXPORT __attribute__((visibility("default")))
#define HSMCERT_VERSION "0.1.0"
#define HSMCERT_PROPS "provider=hsmcert"
/* Every fetch the provider makes for itself avoids its own algorithms (no recursion). */
#define HSMCERT_INNER_PROPQ "provider!=hsmcert"
#define HSMCERT_PEM_LABEL "HSMCERT KEY REFERENCE"
#define HSMCERT_DER_STRUCTURE "hsmcert-ref"
#define HSMCERT_DEFAULT_TIMEOUT_MS 10000

/* ---- frame.c: the agent protocol (docs/agent-protocol.md) ---- */
enum { HSMCERT_OP_HELLO = 1, HSMCERT_OP_PUBKEY = 2, HSMCERT_OP_SIGN = 3, HSMCERT_OP_DECRYPT = 4 };
enum {
    HSMCERT_ST_OK = 0, HSMCERT_ST_BAD_REQUEST, HSMCERT_ST_NOT_FOUND, HSMCERT_ST_DENIED,
    HSMCERT_ST_UNAVAILABLE, HSMCERT_ST_UNSUPPORTED, HSMCERT_ST_INTERNAL
};
enum {
    HSMCERT_TAG_KEYREF = 1, HSMCERT_TAG_ALG, HSMCERT_TAG_DIGEST, HSMCERT_TAG_CIPHERTEXT, HSMCERT_TAG_SPKI,
    HSMCERT_TAG_KEYTYPE, HSMCERT_TAG_KEYVERSION, HSMCERT_TAG_SIGNATURE, HSMCERT_TAG_PLAINTEXT,
    HSMCERT_TAG_MESSAGE, HSMCERT_TAG_VERSIONS, HSMCERT_TAG_CLIENT, HSMCERT_TAG_AGENT
};
#define HSMCERT_TAG_MAX 13
#define HSMCERT_FRAME_HEADER 4
#define HSMCERT_FRAME_MIN 2
#define HSMCERT_FRAME_MAX 65536

/* Why a frame was refused: the `reason` names of the protocol document, in this order. */
enum {
    HSMCERT_FR_OK = 0, HSMCERT_FR_SHORT, HSMCERT_FR_LENGTH, HSMCERT_FR_TRAILING, HSMCERT_FR_VERSION,
    HSMCERT_FR_FIELD_TRUNCATED, HSMCERT_FR_DUPLICATE_TAG, HSMCERT_FR_UNKNOWN_TAG, HSMCERT_FR_UNKNOWN_OP,
    HSMCERT_FR_MISSING_FIELD, HSMCERT_FR_UNEXPECTED_FIELD, HSMCERT_FR_BAD_VALUE, HSMCERT_FR_UNKNOWN_STATUS,
    HSMCERT_FR_ARGUMENT /* encoder misuse: bad tag, value too long, buffer too small */
};

typedef struct hsmcert_frame {
    uint8_t version;
    uint8_t code; /* op of a request, status of a response */
    uint32_t present; /* bit t set when tag t is present */
    const unsigned char *value[HSMCERT_TAG_MAX + 1];
    size_t len[HSMCERT_TAG_MAX + 1];
} HSMCERT_FRAME;

typedef struct hsmcert_field {
    uint8_t tag;
    const void *value;
    size_t len;
} HSMCERT_FIELD;

const char *hsmcert_frame_reason(int reason);
int hsmcert_frame_length(const unsigned char *header, size_t header_len, size_t *body_len);
int hsmcert_frame_decode(const unsigned char *buf, size_t len, HSMCERT_FRAME *frame);
int hsmcert_frame_check_request(const HSMCERT_FRAME *frame);
int hsmcert_frame_check_response(const HSMCERT_FRAME *frame, int op);
long hsmcert_frame_encode(int code, const HSMCERT_FIELD *fields, size_t nfields, unsigned char *out, size_t cap);

/* ---- agent.c: the Unix socket client ---- */
typedef struct hsmcert_agent HSMCERT_AGENT;
typedef struct hsmcert_reply {
    unsigned char *buf;
    size_t len;
    HSMCERT_FRAME frame;
} HSMCERT_REPLY;

HSMCERT_AGENT *hsmcert_agent_new(const char *socket_path, int timeout_ms);
void hsmcert_agent_free(HSMCERT_AGENT *agent);
const char *hsmcert_agent_path(const HSMCERT_AGENT *agent);
/* 1 when the agent answered OK (reply filled, free with hsmcert_reply_clear); 0 on any failure, with
 * a one-sentence message in err. */
int hsmcert_agent_call(HSMCERT_AGENT *agent, int op, const HSMCERT_FIELD *fields, size_t nfields,
                       HSMCERT_REPLY *reply, char *err, size_t errlen);
void hsmcert_reply_clear(HSMCERT_REPLY *reply);

/* ---- provider.c ---- */
typedef struct hsmcert_prov {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx; /* child library context: default provider's digests and public keys */
    HSMCERT_AGENT *agent;
    /* A refused openssl.cnf setting: OpenSSL discards errors raised while it loads its configuration, so
     * the provider loads and every key load reports this sentence instead. NULL when all is well. */
    char *bad_setting;
} HSMCERT_PROV;

/* ---- error.c ---- */
/* Most bytes of an error text OpenSSL 3.0 keeps (ERR_MAX_DATA_SIZE is 1024; a longer text is dropped). */
#define HSMCERT_ERROR_MAX 1000
void hsmcert_error_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in);
const OSSL_ITEM *hsmcert_reason_strings(void *provctx);
/* snprintf that shortens a message too long for cap in the middle (" [...] "), keeping its start and end. */
void hsmcert_vformat(char *out, size_t cap, const char *fmt, va_list ap);
void hsmcert_format(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void hsmcert_raise_at(HSMCERT_PROV *prov, const char *file, int line, const char *func, int reason,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Puts an error on OpenSSL's queue (prov may be NULL) with the caller's file, line and function (as ERR_raise_data does):
 * `openssl` prints them, e.g. "...:sign_digest:hsmcert agent error:src/signature.c:<line>:Signing ...". */
#define hsmcert_raise(prov, reason, ...) \
    hsmcert_raise_at((prov), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (reason), __VA_ARGS__)
#define HSMCERT_R_AGENT 1
#define HSMCERT_R_UNSUPPORTED 2
#define HSMCERT_R_NO_PRIVATE_EXPORT 3
#define HSMCERT_R_BAD_ARGUMENT 4
#define HSMCERT_R_CONFIG 5
#define HSMCERT_R_INTERNAL 6
/* A key reference in a message: at most HSMCERT_REF_SHOWN bytes of it (whole UTF-8 characters), then "...". */
#define HSMCERT_REF_SHOWN 120
#define HSMCERT_REF_FMT "%.*s%s"
#define HSMCERT_REF_ARG(ref) \
    hsmcert_utf8_prefix((ref), HSMCERT_REF_SHOWN), (ref), (strlen(ref) > HSMCERT_REF_SHOWN ? "..." : "")
/* How many bytes of s, at most max, end on a UTF-8 character boundary. */
int hsmcert_utf8_prefix(const char *s, size_t max);
/* The longest key reference the provider sends: every request must fit in one frame (65536 bytes). */
#define HSMCERT_KEYREF_MAX 32768

/* ---- keymgmt.c: the key object shared by store, decoder, signature and asym_cipher ---- */
typedef struct hsmcert_key {
    HSMCERT_PROV *prov;
    int refs; /* atomic */
    int type; /* EVP_PKEY_RSA or EVP_PKEY_EC */
    char *ref; /* NULL for a public-only key imported from another provider */
    char *version;
    EVP_PKEY *pub; /* public key in prov->libctx */
} HSMCERT_KEY;

HSMCERT_KEY *hsmcert_key_fetch(HSMCERT_PROV *prov, const char *ref);
HSMCERT_KEY *hsmcert_key_up(HSMCERT_KEY *key);
void hsmcert_key_free(HSMCERT_KEY *key);
const char *hsmcert_key_type_name(const HSMCERT_KEY *key);
/* Hands a key to an OpenSSL object callback as a reference (store and decoder). */
int hsmcert_key_to_object_cb(HSMCERT_KEY *key, OSSL_CALLBACK *cb, void *cbarg);

/* Scheme test used by STORE and by the DECODER. */
int hsmcert_is_keyref(const char *uri);

extern const OSSL_DISPATCH hsmcert_store_functions[];
extern const OSSL_DISPATCH hsmcert_pem_decoder_functions[];
extern const OSSL_DISPATCH hsmcert_der_rsa_decoder_functions[];
extern const OSSL_DISPATCH hsmcert_der_ec_decoder_functions[];
extern const OSSL_DISPATCH hsmcert_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH hsmcert_ec_keymgmt_functions[];
extern const OSSL_DISPATCH hsmcert_rsa_signature_functions[];
extern const OSSL_DISPATCH hsmcert_ecdsa_signature_functions[];
extern const OSSL_DISPATCH hsmcert_rsa_asym_cipher_functions[];

#endif
