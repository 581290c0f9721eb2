/*
 * Broadcast load generator in C, for when the Node.js one cannot keep up.
 *
 * At 100,000 deliveries/s into 2,000 sockets every delivery is its own TCP segment and read.
 * One core running Node.js spends ~0.35 of itself in the per-read path (libuv -> C++ -> JS)
 * on top of ~0.5 in the kernel, and sits at the edge of saturation, so its own stalls show
 * up as server latency. The same load from epoll and read() in C leaves the kernel share
 * only. It speaks just what the broadcast benchmark needs of ocs.v1 (`?user=`, `join`, `pub`,
 * `msg` and `batch`), and measures the same way as tools/bench/lib/broadcast-load.ts and
 * broadcast-receipts.ts: each pub carries {"t":<epoch ms>,"s":<global seq>,"p":<publisher>},
 * every delivery is counted, loss and duplicates exactly.
 *
 * usage: broadcast-loadgen HOST PORT PATH CONNECTIONS GROUPS PUBLISHERS RATE WARMUP_S DURATION_S DRAIN_S
 * stderr: "measure-start" and "measure-end" lines (the caller samples server CPU there).
 * stdout: one JSON object.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)
/* Latency histogram: 1 us buckets up to 10 ms, then 100 us buckets up to 10 s. */
#define FINE_US 10000
#define COARSE_STEP_US 100
#define COARSE_BUCKETS 100000

typedef struct {
  int fd;
  int group;
  size_t len;
  unsigned char *buf;
  uint8_t *seen; /* one bit per global pub seq */
} conn_t;

static conn_t *conns;
static int nconns, ngroups, npubs;
static long total_pubs;
static uint64_t fine[FINE_US], coarse[COARSE_BUCKETS];
static uint64_t hist_count, hist_max_us;
static long window_first, window_last; /* pub seqs measured: [first, last) */
static uint64_t received, duplicates, misrouted, frames;
static int *pub_conn;   /* publisher -> connection index */
static int *pub_group;  /* publisher -> group */
static long *group_members;
static uint64_t slip_fine[FINE_US], slip_coarse[COARSE_BUCKETS], slip_count;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "broadcast-loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void record(uint64_t *f, uint64_t *c, double ms) {
  long us = (long)(ms * 1000.0);
  if (us < 0) us = 0;
  if (us < FINE_US) f[us]++;
  else {
    long b = (us - FINE_US) / COARSE_STEP_US;
    if (b >= COARSE_BUCKETS) b = COARSE_BUCKETS - 1;
    c[b]++;
  }
}

static double percentile(uint64_t *f, uint64_t *c, uint64_t count, double p) {
  if (count == 0) return 0;
  uint64_t want = (uint64_t)(p / 100.0 * count + 0.5), seen = 0;
  if (want < 1) want = 1;
  for (long i = 0; i < FINE_US; i++)
    if ((seen += f[i]) >= want) return i / 1000.0;
  for (long i = 0; i < COARSE_BUCKETS; i++)
    if ((seen += c[i]) >= want) return (FINE_US + i * COARSE_STEP_US) / 1000.0;
  return (FINE_US + (double)COARSE_BUCKETS * COARSE_STEP_US) / 1000.0;
}

/* Client frames are masked (RFC 6455); a zero mask key keeps the payload as is. */
static void send_text(int fd, const char *text, size_t n) {
  unsigned char frame[16 + 4096];
  size_t h = 0;
  frame[h++] = 0x81;
  if (n < 126) frame[h++] = 0x80 | (unsigned char)n;
  else {
    frame[h++] = 0x80 | 126;
    frame[h++] = (unsigned char)(n >> 8);
    frame[h++] = (unsigned char)n;
  }
  memset(frame + h, 0, 4);
  h += 4;
  memcpy(frame + h, text, n);
  size_t total = h + n, off = 0;
  while (off < total) {
    ssize_t w = write(fd, frame + off, total - off);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      die("write");
    }
    off += (size_t)w;
  }
}

/* Parses a number after `key` inside [p, end); returns the char after it or NULL. */
static const char *number_after(const char *p, const char *end, const char *key, double *out) {
  size_t k = strlen(key);
  const char *at = memmem(p, (size_t)(end - p), key, k);
  if (!at) return NULL;
  char *stop;
  *out = strtod(at + k, &stop);
  return stop;
}

static void on_delivery(conn_t *c, double t, long s, long p, double recv_ms) {
  if (s < 0 || s >= total_pubs || p < 0 || p >= npubs) return;
  if (pub_group[p] != c->group) {
    misrouted++;
    return;
  }
  uint8_t bit = (uint8_t)(1u << (s & 7));
  if (c->seen[s >> 3] & bit) {
    duplicates++;
    return;
  }
  c->seen[s >> 3] |= bit;
  if (s >= window_first && s < window_last) {
    received++;
    double ms = recv_ms - t;
    record(fine, coarse, ms);
    hist_count++;
    if ((uint64_t)(ms * 1000) > hist_max_us) hist_max_us = (uint64_t)(ms * 1000);
  }
}

/* One text payload: a msg, a batch of msgs, or anything else (ignored here). */
static int on_text(conn_t *c, const char *p, size_t n, double recv_ms) {
  const char *end = p + n;
  frames++;
  if (!memmem(p, n, "\"op\":\"msg\"", 10) && !memmem(p, n, "\"op\":\"batch\"", 12)) {
    return memmem(p, n, "\"op\":\"joined\"", 13) != NULL;
  }
  const char *at = p;
  for (;;) {
    const char *data = memmem(at, (size_t)(end - at), "\"data\":{", 8);
    if (!data) break;
    const char *close = memchr(data, '}', (size_t)(end - data));
    if (!close) break;
    double t, s, pub;
    if (number_after(data, close, "\"t\":", &t) && number_after(data, close, "\"s\":", &s) && number_after(data, close, "\"p\":", &pub)) {
      on_delivery(c, t, (long)s, (long)pub, recv_ms);
    }
    at = close + 1;
  }
  return 0;
}

/* Consumes whole frames from c->buf; returns how many `joined` frames it saw. */
static int drain_frames(conn_t *c, double recv_ms) {
  size_t off = 0;
  int joined = 0;
  while (c->len - off >= 2) {
    unsigned char *f = c->buf + off;
    uint64_t n = f[1] & 0x7f;
    size_t h = 2;
    if (n == 126) {
      if (c->len - off < 4) break;
      n = ((uint64_t)f[2] << 8) | f[3];
      h = 4;
    } else if (n == 127) {
      if (c->len - off < 10) break;
      n = 0;
      for (int i = 0; i < 8; i++) n = (n << 8) | f[2 + i];
      h = 10;
    }
    if (c->len - off < h + n) break;
    int opcode = f[0] & 0x0f;
    if (opcode == 1) joined += on_text(c, (const char *)f + h, (size_t)n, recv_ms);
    else if (opcode == 9) { /* ping: answer with a masked pong */
      unsigned char pong[6 + 125] = {0x8a, (unsigned char)(0x80 | n), 0, 0, 0, 0};
      memcpy(pong + 6, f + h, (size_t)n);
      if (write(c->fd, pong, 6 + (size_t)n) < 0) die("pong");
    } else if (opcode == 8) {
      fprintf(stderr, "broadcast-loadgen: server closed connection %ld\n", (long)(c - conns));
    }
    off += h + n;
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  return joined;
}

static int read_into(conn_t *c) {
  ssize_t r = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
  if (r > 0) c->len += (size_t)r;
  return (int)r;
}

static void open_conn(conn_t *c, const char *host, int port, const char *path, int i) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %s?user=u%d HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   path, i, host, port);
  if (write(c->fd, req, (size_t)n) != n) die("handshake write");
  for (;;) { /* read the 101 response; frames after it stay in the buffer */
    if (read_into(c) <= 0) die("handshake read");
    char *eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!eoh) continue;
    if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
      fprintf(stderr, "broadcast-loadgen: upgrade refused: %.40s\n", c->buf);
      exit(1);
    }
    size_t head = (size_t)(eoh + 4 - (char *)c->buf);
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
    break;
  }
  char join[96];
  n = snprintf(join, sizeof join, "{\"op\":\"join\",\"group\":\"g%d\"}", c->group);
  send_text(c->fd, join, (size_t)n);
  while (!drain_frames(c, now_ms()))
    if (read_into(c) <= 0) die("join read");
}

int main(int argc, char **argv) {
  if (argc != 11) {
    fprintf(stderr, "usage: %s HOST PORT PATH CONNECTIONS GROUPS PUBLISHERS RATE WARMUP_S DURATION_S DRAIN_S\n", argv[0]);
    return 2;
  }
  const char *host = argv[1], *path = argv[3];
  int port = atoi(argv[2]);
  nconns = atoi(argv[4]);
  ngroups = atoi(argv[5]);
  npubs = atoi(argv[6]);
  double rate = atof(argv[7]), warmup = atof(argv[8]), duration = atof(argv[9]), drain_s = atof(argv[10]);
  total_pubs = (long)(rate * (warmup + duration));
  window_first = (long)(rate * warmup);
  window_last = total_pubs;

  conns = calloc((size_t)nconns, sizeof *conns);
  group_members = calloc((size_t)ngroups, sizeof *group_members);
  pub_conn = calloc((size_t)npubs, sizeof *pub_conn);
  pub_group = calloc((size_t)npubs, sizeof *pub_group);
  size_t seen_bytes = (size_t)(total_pubs / 8 + 1);
  for (int i = 0; i < nconns; i++) {
    conns[i].group = i % ngroups;
    conns[i].buf = malloc(BUF_SIZE);
    conns[i].seen = calloc(seen_bytes, 1);
    group_members[conns[i].group]++;
  }
  /* Publisher p is the p-th connection of group p % groups. */
  for (int p = 0; p < npubs; p++) {
    pub_group[p] = p % ngroups;
    pub_conn[p] = pub_group[p] + (p / ngroups) * ngroups;
    if (pub_conn[p] >= nconns) pub_conn[p] = pub_group[p];
  }
  for (int i = 0; i < nconns; i++) open_conn(&conns[i], host, port, path, i);

  int ep = epoll_create1(0);
  for (int i = 0; i < nconns; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl");
  }

  struct rusage ru0, ru1;
  double start = now_ms() + 20, interval = 1000.0 / rate, measure_start = start + warmup * 1000.0;
  double measure_end = start + (warmup + duration) * 1000.0;
  int measuring = 0;
  long next = 0;
  struct epoll_event events[512];
  double deadline = measure_end + drain_s * 1000.0;
  uint64_t expected = 0;
  for (long s = window_first; s < window_last; s++) expected += (uint64_t)group_members[pub_group[s % npubs]];
  for (;;) {
    double now = now_ms();
    if (!measuring && now >= measure_start) {
      measuring = 1;
      getrusage(RUSAGE_SELF, &ru0);
      fprintf(stderr, "measure-start\n");
    }
    while (next < total_pubs && start + next * interval <= now) {
      double due = start + next * interval;
      int p = (int)(next % npubs);
      char msg[160];
      int n = snprintf(msg, sizeof msg, "{\"op\":\"pub\",\"group\":\"g%d\",\"data\":{\"t\":%.3f,\"s\":%ld,\"p\":%d}}", pub_group[p], now, next, p);
      send_text(conns[pub_conn[p]].fd, msg, (size_t)n);
      if (next >= window_first) {
        record(slip_fine, slip_coarse, now - due);
        slip_count++;
      }
      next++;
    }
    if (next >= total_pubs && measuring == 1 && now >= measure_end) {
      measuring = 2;
      getrusage(RUSAGE_SELF, &ru1);
      fprintf(stderr, "measure-end\n");
    }
    if (next >= total_pubs && (received >= expected || now >= deadline)) break;
    double wait = next < total_pubs ? start + next * interval - now : 10;
    int timeout = wait <= 0 ? 0 : (int)wait;
    int ready = epoll_wait(ep, events, 512, timeout);
    double recv_ms = now_ms();
    for (int e = 0; e < ready; e++) {
      conn_t *c = &conns[events[e].data.u32];
      int r = read_into(c);
      if (r == 0) {
        fprintf(stderr, "broadcast-loadgen: connection %u closed\n", events[e].data.u32);
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      if (r > 0) drain_frames(c, recv_ms);
    }
  }
  if (measuring != 2) {
    getrusage(RUSAGE_SELF, &ru1);
    fprintf(stderr, "measure-end\n");
  }
  double cpu_s = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
  printf("{\"expectedDeliveries\":%lu,\"receivedDeliveries\":%lu,\"lostDeliveries\":%ld,\"duplicateDeliveries\":%lu,"
         "\"misroutedDeliveries\":%lu,\"framesReceived\":%lu,\"deliveriesPerSecond\":%.0f,"
         "\"latencyMs\":{\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
         "\"generator\":{\"cores\":%.3f,\"scheduleSlipMs\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}}\n",
         (unsigned long)expected, (unsigned long)received, (long)expected - (long)received, (unsigned long)duplicates,
         (unsigned long)misrouted, (unsigned long)frames, received / duration, percentile(fine, coarse, hist_count, 50),
         percentile(fine, coarse, hist_count, 95), percentile(fine, coarse, hist_count, 99), percentile(fine, coarse, hist_count, 99.9),
         hist_max_us / 1000.0, cpu_s / duration, percentile(slip_fine, slip_coarse, slip_count, 50),
         percentile(slip_fine, slip_coarse, slip_count, 99), percentile(slip_fine, slip_coarse, slip_count, 100));
  return 0;
}
