/*
 * Request/response and connection-rate probe for bench/compare.ts (netperf TCP_RR / TCP_CRR style).
 * Plain blocking sockets, no event loop on either end, so what is measured is the network path
 * (the stack under test), not a runtime's scheduling. Built at bench time with `cc -O2`.
 *
 *   rr server-rr  ADDR PORT            echo 1 byte per request, one connection at a time
 *   rr server-crr ADDR PORT            accept, read 1 byte, write 1 byte, close
 *   rr client-rr  HOST PORT SECONDS    -> {"transactions":N,"seconds":S,"mean_us":U}
 *   rr client-crr HOST PORT SECONDS    -> {"connections":N,"seconds":S,"per_second":R,"errors":E}
 *
 * IPv4 only (the lab's world is 203.0.113.10); binds only the address it is given.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "rr: %s: %s\n", what, strerror(errno));
  exit(1);
}

static struct sockaddr_in addr_of(const char *host, const char *port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(port));
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "rr: bad IPv4 address %s\n", host);
    exit(2);
  }
  return a;
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int full_read1(int fd, char *c) {
  for (;;) {
    ssize_t n = read(fd, c, 1);
    if (n == 1) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static int listener(const char *host, const char *port) {
  struct sockaddr_in a = addr_of(host, port);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(fd, 4096) < 0) die("listen");
  printf("READY\n");
  fflush(stdout);
  return fd;
}

static int server(const char *host, const char *port, int crr) {
  int lfd = listener(host, port);
  for (;;) {
    int c = accept(lfd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept");
    }
    nodelay(c);
    char b;
    if (crr) {
      if (full_read1(c, &b) == 1) (void)!write(c, &b, 1);
    } else {
      while (full_read1(c, &b) == 1)
        if (write(c, &b, 1) != 1) break;
    }
    close(c);
  }
  return 0;
}

static int dial(struct sockaddr_in *a) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr *)a, sizeof *a) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  nodelay(fd);
  return fd;
}

static int client_rr(const char *host, const char *port, double seconds) {
  struct sockaddr_in a = addr_of(host, port);
  int fd = dial(&a);
  if (fd < 0) die("connect");
  char b = 'x';
  /* warm-up */
  for (int i = 0; i < 200; i++) {
    if (write(fd, &b, 1) != 1 || full_read1(fd, &b) != 1) die("warm-up");
  }
  long n = 0;
  double t0 = now(), t = t0;
  while (t - t0 < seconds) {
    for (int i = 0; i < 100; i++) {
      if (write(fd, &b, 1) != 1) die("write");
      if (full_read1(fd, &b) != 1) die("read");
    }
    n += 100;
    t = now();
  }
  close(fd);
  printf("{\"transactions\":%ld,\"seconds\":%.6f,\"mean_us\":%.3f}\n", n, t - t0, (t - t0) / n * 1e6);
  return 0;
}

static int client_crr(const char *host, const char *port, double seconds) {
  struct sockaddr_in a = addr_of(host, port);
  long n = 0, errors = 0;
  double t0 = now(), t = t0;
  while (t - t0 < seconds) {
    int fd = dial(&a);
    if (fd < 0) {
      errors++;
      if (errors > 1000) break;
    } else {
      char b = 'x';
      if (write(fd, &b, 1) == 1 && full_read1(fd, &b) == 1) n++;
      else errors++;
      close(fd);
    }
    t = now();
  }
  printf("{\"connections\":%ld,\"seconds\":%.6f,\"per_second\":%.1f,\"errors\":%ld}\n", n, t - t0, n / (t - t0), errors);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4 && !strcmp(argv[1], "server-rr")) return server(argv[2], argv[3], 0);
  if (argc == 4 && !strcmp(argv[1], "server-crr")) return server(argv[2], argv[3], 1);
  if (argc == 5 && !strcmp(argv[1], "client-rr")) return client_rr(argv[2], argv[3], atof(argv[4]));
  if (argc == 5 && !strcmp(argv[1], "client-crr")) return client_crr(argv[2], argv[3], atof(argv[4]));
  fprintf(stderr, "usage: rr server-rr|server-crr ADDR PORT | client-rr|client-crr HOST PORT SECONDS\n");
  return 2;
}
