/* The agent client: a few Unix stream sockets per process (one request at a time on each, so threads
 * of one server sign in parallel), reconnected after fork (pid check) and when the agent closed the
 * connection (restart). Every call has a deadline of timeout_ms. No network: the only I/O of the
 * provider is this socket. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hsmcert.h"

#define AGENT_CONNS 4

typedef struct {
    int fd;
    pid_t pid; /* the process that opened fd */
    int busy;
} CONN;

struct hsmcert_agent {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    char *path;
    int timeout_ms;
    CONN conns[AGENT_CONNS];
};

static const char *const status_names[] = {
    "OK", "BAD_REQUEST", "NOT_FOUND", "DENIED", "UNAVAILABLE", "UNSUPPORTED", "INTERNAL",
};

HSMCERT_AGENT *hsmcert_agent_new(const char *socket_path, int timeout_ms)
{
    HSMCERT_AGENT *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    if ((a->path = strdup(socket_path)) == NULL) {
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->freed, NULL);
    a->timeout_ms = timeout_ms > 0 ? timeout_ms : HSMCERT_DEFAULT_TIMEOUT_MS;
    for (int i = 0; i < AGENT_CONNS; i++)
        a->conns[i].fd = -1;
    return a;
}

const char *hsmcert_agent_path(const HSMCERT_AGENT *agent)
{
    return agent->path;
}

static void conn_close(CONN *c)
{
    /* A descriptor inherited across fork belongs to the parent's conversation: closing our copy
     * leaves the parent's connection alone. */
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void hsmcert_agent_free(HSMCERT_AGENT *agent)
{
    if (agent == NULL)
        return;
    for (int i = 0; i < AGENT_CONNS; i++)
        conn_close(&agent->conns[i]);
    pthread_cond_destroy(&agent->freed);
    pthread_mutex_destroy(&agent->lock);
    free(agent->path);
    free(agent);
}

void hsmcert_reply_clear(HSMCERT_REPLY *reply)
{
    if (reply == NULL)
        return;
    free(reply->buf);
    memset(reply, 0, sizeof(*reply));
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    hsmcert_vformat(err, errlen, fmt, ap);
    va_end(ap);
}

static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        long long left = deadline - now_ms();
        int rc;

        if (left <= 0)
            return 0;
        rc = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static int agent_connect(HSMCERT_AGENT *a, CONN *c, long long deadline, char *err, size_t errlen)
{
    struct sockaddr_un addr;
    int fd;

    if (strlen(a->path) >= sizeof(addr.sun_path)) {
        set_err(err, errlen, "The agent socket path %s is too long.", a->path);
        return 0;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, a->path, strlen(a->path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        set_err(err, errlen, "Cannot create a Unix socket: %s.", strerror(errno));
        return 0;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;

        if (e == EINPROGRESS || e == EAGAIN) {
            int so_err = 0;
            socklen_t sl = sizeof(so_err);

            if (wait_fd(fd, POLLOUT, deadline) <= 0) {
                close(fd);
                set_err(err, errlen, "The hsmcert agent at %s did not accept the connection in time.",
                        a->path);
                return 0;
            }
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl);
            e = so_err;
        }
        if (e != 0) {
            close(fd);
            set_err(err, errlen, "The hsmcert agent is not reachable at %s (%s); start it with "
                    "`hsmcert agent --socket %s`.", a->path, strerror(e), a->path);
            return 0;
        }
    }
    c->fd = fd;
    c->pid = getpid();
    return 1;
}

static int send_all(int fd, const unsigned char *buf, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline) <= 0)
                return -2;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 1;
}

/* 1 read, 0 peer closed before any byte, -1 error / closed mid-way, -2 timeout. */
static int recv_all(int fd, unsigned char *buf, size_t len, long long deadline)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);

        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            return got == 0 ? 0 : -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, POLLIN, deadline) <= 0)
                return -2;
        } else if (errno != EINTR) {
            return got == 0 ? 0 : -1;
        }
    }
    return 1;
}

/* One exchange on the open connection. Returns 1 done, 0 connection lost before an answer (retry on a
 * new connection), -1 failed (err set). */
static int exchange(HSMCERT_AGENT *a, CONN *c, const unsigned char *req, size_t req_len, int op, HSMCERT_REPLY *reply,
                    long long deadline, char *err, size_t errlen)
{
    unsigned char header[HSMCERT_FRAME_HEADER];
    size_t body_len;
    int rc;

    rc = send_all(c->fd, req, req_len, deadline);
    if (rc == -2)
        goto timeout;
    if (rc < 0)
        return 0;
    rc = recv_all(c->fd, header, sizeof(header), deadline);
    if (rc == -2)
        goto timeout;
    if (rc <= 0)
        return 0;
    if ((rc = hsmcert_frame_length(header, sizeof(header), &body_len)) != HSMCERT_FR_OK) {
        set_err(err, errlen, "The hsmcert agent sent a malformed frame (%s).", hsmcert_frame_reason(rc));
        return -1;
    }
    if ((reply->buf = malloc(HSMCERT_FRAME_HEADER + body_len)) == NULL) {
        set_err(err, errlen, "Out of memory.");
        return -1;
    }
    memcpy(reply->buf, header, sizeof(header));
    rc = recv_all(c->fd, reply->buf + HSMCERT_FRAME_HEADER, body_len, deadline);
    if (rc == -2)
        goto timeout;
    if (rc <= 0) {
        set_err(err, errlen, "The hsmcert agent at %s closed the connection in the middle of an answer.",
                a->path);
        return -1;
    }
    reply->len = HSMCERT_FRAME_HEADER + body_len;
    rc = hsmcert_frame_decode(reply->buf, reply->len, &reply->frame);
    if (rc == HSMCERT_FR_OK)
        rc = hsmcert_frame_check_response(&reply->frame, op);
    if (rc != HSMCERT_FR_OK) {
        set_err(err, errlen, "The hsmcert agent sent a malformed answer (%s).", hsmcert_frame_reason(rc));
        return -1;
    }
    return 1;
timeout:
    set_err(err, errlen, "The hsmcert agent at %s did not answer within %d ms.", a->path, a->timeout_ms);
    return -1;
}

/* HELLO on a new connection: agrees on version 1 and names the client for the agent's audit log. */
static int hello(HSMCERT_AGENT *a, CONN *c, long long deadline, char *err, size_t errlen)
{
    static const unsigned char versions[] = { 1 };
    static const char client[] = "hsmcert-provider/" HSMCERT_VERSION;
    const HSMCERT_FIELD fields[] = {
        { HSMCERT_TAG_VERSIONS, versions, sizeof(versions) },
        { HSMCERT_TAG_CLIENT, client, sizeof(client) - 1 },
    };
    unsigned char req[64];
    long len = hsmcert_frame_encode(HSMCERT_OP_HELLO, fields, 2, req, sizeof(req));
    HSMCERT_REPLY reply;
    int rc;

    memset(&reply, 0, sizeof(reply));
    rc = exchange(a, c, req, (size_t)len, HSMCERT_OP_HELLO, &reply, deadline, err, errlen);
    if (rc == 1 && (reply.frame.code != HSMCERT_ST_OK || reply.frame.value[HSMCERT_TAG_VERSIONS][0] != 1)) {
        set_err(err, errlen, "The hsmcert agent at %s does not speak protocol version 1.", a->path);
        rc = -1;
    } else if (rc == 0) {
        set_err(err, errlen, "The hsmcert agent at %s closed the connection.", a->path);
    }
    hsmcert_reply_clear(&reply);
    return rc == 1;
}

/* A connection for this thread: an idle one of this process, else an unused slot, else wait. */
static CONN *conn_take(HSMCERT_AGENT *a, long long deadline)
{
    CONN *found = NULL;
    pid_t pid = getpid();

    pthread_mutex_lock(&a->lock);
    while (found == NULL) {
        for (int i = 0; i < AGENT_CONNS; i++) {
            CONN *c = &a->conns[i];

            if (c->pid != pid) {
                /* Opened before a fork (its busy flag is the parent's): forget it. */
                conn_close(c);
                c->busy = 0;
                c->pid = pid;
            }
            if (!c->busy && (found == NULL || (found->fd < 0 && c->fd >= 0)))
                found = c;
        }
        if (found == NULL) {
            struct timespec ts;
            long long left = deadline - now_ms();

            if (left <= 0)
                break;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += left / 1000;
            ts.tv_nsec += (left % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&a->freed, &a->lock, &ts);
        }
    }
    if (found != NULL)
        found->busy = 1;
    pthread_mutex_unlock(&a->lock);
    return found;
}

static void conn_give(HSMCERT_AGENT *a, CONN *c)
{
    pthread_mutex_lock(&a->lock);
    c->busy = 0;
    pthread_cond_signal(&a->freed);
    pthread_mutex_unlock(&a->lock);
}

int hsmcert_agent_call(HSMCERT_AGENT *a, int op, const HSMCERT_FIELD *fields, size_t nfields,
                       HSMCERT_REPLY *reply, char *err, size_t errlen)
{
    unsigned char *req;
    long req_len;
    long long deadline = now_ms() + a->timeout_ms;
    int ok = 0, rc = 0;
    CONN *c;

    memset(reply, 0, sizeof(*reply));
    req = malloc(HSMCERT_FRAME_HEADER + HSMCERT_FRAME_MAX);
    if (req == NULL) {
        set_err(err, errlen, "Out of memory.");
        return 0;
    }
    req_len = hsmcert_frame_encode(op, fields, nfields, req, HSMCERT_FRAME_HEADER + HSMCERT_FRAME_MAX);
    if (req_len < 0) {
        set_err(err, errlen, "The request does not fit in an agent frame.");
        free(req);
        return 0;
    }
    if ((c = conn_take(a, deadline)) == NULL) {
        set_err(err, errlen, "All connections to the hsmcert agent at %s stayed busy for %d ms.", a->path,
                a->timeout_ms);
        free(req);
        return 0;
    }
    /* A kept connection may have been closed by an agent restart: one retry on a fresh one. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = c->fd < 0;

        if (fresh && !agent_connect(a, c, deadline, err, errlen))
            break;
        if (fresh && !hello(a, c, deadline, err, errlen)) {
            conn_close(c);
            break;
        }
        rc = exchange(a, c, req, (size_t)req_len, op, reply, deadline, err, errlen);
        if (rc == 1)
            break;
        hsmcert_reply_clear(reply);
        conn_close(c);
        if (rc < 0)
            break;
        if (fresh) {
            set_err(err, errlen, "The hsmcert agent at %s closed the connection without answering.",
                    a->path);
            break;
        }
    }
    /* After BAD_REQUEST the agent may hang up: do not keep that connection. */
    if (rc == 1 && reply->frame.code == HSMCERT_ST_BAD_REQUEST)
        conn_close(c);
    conn_give(a, c);
    free(req);
    if (rc != 1)
        return 0;
    if (reply->frame.code != HSMCERT_ST_OK) {
        const HSMCERT_FRAME *f = &reply->frame;

        set_err(err, errlen, "%.*s (agent status %s)", (int)f->len[HSMCERT_TAG_MESSAGE],
                (const char *)f->value[HSMCERT_TAG_MESSAGE], status_names[f->code]);
        hsmcert_reply_clear(reply);
        return 0;
    }
    ok = 1;
    return ok;
}
