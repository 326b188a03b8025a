/* Errors: the core's error functions, hsmcert_raise_at (behind the hsmcert_raise macro, which records
 * the caller's file, line and function) and the provider's reason strings.
 *
 * OpenSSL 3.0 keeps at most ERR_MAX_DATA_SIZE (1024) bytes of an error's text and stores an EMPTY
 * text when the formatted message does not fit, so every message is formatted here first and, when
 * too long, shortened in the middle: the start (what failed, with which key) and the end (the agent's
 * reason and status) both survive. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>

#include "hsmcert.h"

static OSSL_FUNC_core_new_error_fn *core_new_error;
static OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
static OSSL_FUNC_core_vset_error_fn *core_vset_error;
/* The handle errors are raised with when the caller has no provider context (OpenSSL passed NULL). */
static const OSSL_CORE_HANDLE *core_handle;

void hsmcert_error_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in)
{
    core_handle = handle;
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
        default:
            break;
        }
    }
}

#define ELLIPSIS " [...] "

void hsmcert_vformat(char *out, size_t cap, const char *fmt, va_list ap)
{
    va_list copy;
    char *full;
    int n;

    if (out == NULL || cap == 0)
        return;
    va_copy(copy, ap);
    n = vsnprintf(out, cap, fmt, ap);
    if (n < 0) {
        out[0] = '\0';
    } else if ((size_t)n >= cap && cap > 2 * sizeof(ELLIPSIS) && (full = malloc((size_t)n + 1)) != NULL) {
        /* Too long: keep the first 3/5 and the last 2/5 of the room, joined by an ellipsis, without
         * cutting a UTF-8 character in two. */
        size_t room = cap - 1 - (sizeof(ELLIPSIS) - 1), head = room * 3 / 5, tail = room - head;

        vsnprintf(full, (size_t)n + 1, fmt, copy);
        while (head > 0 && ((unsigned char)full[head] & 0xC0) == 0x80)
            head--;
        while (tail > 0 && ((unsigned char)full[(size_t)n - tail] & 0xC0) == 0x80)
            tail--;
        memcpy(out, full, head);
        memcpy(out + head, ELLIPSIS, sizeof(ELLIPSIS) - 1);
        memcpy(out + head + sizeof(ELLIPSIS) - 1, full + (size_t)n - tail, tail);
        out[head + sizeof(ELLIPSIS) - 1 + tail] = '\0';
        free(full);
    }
    va_end(copy);
}

int hsmcert_utf8_prefix(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);

    if (n <= max)
        return (int)n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

void hsmcert_format(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    hsmcert_vformat(out, cap, fmt, ap);
    va_end(ap);
}

/* core_vset_error takes a va_list: this passes the finished text through "%s". */
static void set_error_text(const OSSL_CORE_HANDLE *handle, int reason, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    core_vset_error(handle, (uint32_t)reason, fmt, ap);
    va_end(ap);
}

void hsmcert_raise_at(HSMCERT_PROV *prov, const char *file, int line, const char *func, int reason,
                      const char *fmt, ...)
{
    const OSSL_CORE_HANDLE *handle = prov != NULL ? prov->handle : core_handle;
    char text[HSMCERT_ERROR_MAX];
    va_list ap;

    if (handle == NULL || core_new_error == NULL || core_vset_error == NULL)
        return;
    va_start(ap, fmt);
    hsmcert_vformat(text, sizeof(text), fmt, ap);
    va_end(ap);
    core_new_error(handle);
    if (core_set_error_debug != NULL)
        core_set_error_debug(handle, file, line, func);
    set_error_text(handle, reason, "%s", text);
}

static const OSSL_ITEM reason_strings[] = {
    { HSMCERT_R_AGENT, "hsmcert agent error" },
    { HSMCERT_R_UNSUPPORTED, "not supported by the HSM key" },
    { HSMCERT_R_NO_PRIVATE_EXPORT, "private key stays in the HSM" },
    { HSMCERT_R_BAD_ARGUMENT, "bad argument" },
    { HSMCERT_R_CONFIG, "bad provider setting" },
    { HSMCERT_R_INTERNAL, "internal error" },
    { 0, NULL },
};

const OSSL_ITEM *hsmcert_reason_strings(void *provctx)
{
    return reason_strings;
}
