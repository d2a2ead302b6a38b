/*
 * spawnFds / reapPid: start a helper program with posix_spawn(3) and collect its exit status.
 *
 * Node's child_process.spawn forks the whole Node process (libuv's uv_spawn uses fork(2)) and
 * builds a ChildProcess with its stdio machinery around it: ~4-5 ms on a 2-core VM, on the launch
 * path of every container (the namespace agent).  glibc's posix_spawn uses clone(CLONE_VM |
 * CLONE_VFORK): no copy of the page tables, and the caller waits only until the exec.  The exit is
 * seen through a pidfd (pidfd_open(2), Linux 5.3), which the caller polls (FdWatch); once it is
 * readable, reapPid collects the status with waitpid(WNOHANG).  libuv never reaps a child it did
 * not start (its SIGCHLD handler waits for its own pids only), so the pid stays ours until then.
 *
 * spawnFds(path, argv, fds) -> [pid, pidfd]: the child gets fd i = the caller's fds[i] (-1: opened
 * on /dev/null) and no other fd of ours (closefrom in the child); the signal mask is emptied and every
 * signal disposition reset to the default (Node ignores SIGPIPE, for one).  The environment is
 * the process's own (process.env writes reach it).  Errors throw, with the errno's code (ENOENT,
 * EACCES from the exec; ENOSYS when the kernel has no pidfd_open, after the child is killed and
 * reaped).
 *
 * reapPid(pid) -> null while it runs, else [code, signal] (code -1 when a signal ended it, signal
 * 0 when it exited).
 */
#include "addon.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPAWN_MAX_FDS 16
#define SPAWN_MAX_ARGS 256
/* Where the sources of the child's fds are parked (close-on-exec) before the dup2 actions, so no
 * action overwrites the source of a later one. */
#define SPAWN_PARK_FD 64

extern char **environ;

static void free_strings(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
}

static char *get_string(napi_env env, napi_value v, const char *name) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a string", name);
    sw_throw_type(env, msg);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) { sw_throw_errno(env, "malloc", ENOMEM); return NULL; }
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    char msg[96];
    snprintf(msg, sizeof msg, "%s must not contain NUL", name);
    sw_throw_type(env, msg);
    return NULL;
  }
  return s;
}

static napi_value js_spawn_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) { sw_throw_type(env, "spawnFds(path, argv, fds)"); return NULL; }
  uint32_t nargs, nfds;
  if (!sw_get_array(env, argv[1], "argv must be an array of strings", &nargs)) return NULL;
  if (!sw_get_array(env, argv[2], "fds must be an array of fd numbers (-1: /dev/null)", &nfds)) return NULL;
  if (nargs < 1 || nargs >= SPAWN_MAX_ARGS) { sw_throw_range(env, "argv must have 1 to 255 strings"); return NULL; }
  if (nfds > SPAWN_MAX_FDS) { sw_throw_range(env, "at most 16 fds"); return NULL; }

  char *path = get_string(env, argv[0], "path");
  if (!path) return NULL;
  char *args[SPAWN_MAX_ARGS] = { 0 };
  size_t got = 0;
  for (; got < nargs; got++) {
    napi_value el;
    if (napi_get_element(env, argv[1], got, &el) != napi_ok || !(args[got] = get_string(env, el, "argv[i]"))) {
      free_strings(args, got);
      free(path);
      return NULL;
    }
  }
  int src[SPAWN_MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value el;
    int64_t fd;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || !sw_get_int(env, el, "fds[i]", -1, INT_MAX, &fd)) {
      free_strings(args, got);
      free(path);
      return NULL;
    }
    src[i] = (int)fd;
  }

  int parked[SPAWN_MAX_FDS];
  uint32_t nparked = 0;
  int err = 0;
  const char *what = "posix_spawn";
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  for (uint32_t i = 0; i < nfds && !err; i++) {
    if (src[i] < 0) {
      err = posix_spawn_file_actions_addopen(&fa, (int)i, "/dev/null", O_RDWR, 0);
      continue;
    }
    int p = fcntl(src[i], F_DUPFD_CLOEXEC, SPAWN_PARK_FD);
    if (p < 0) { err = errno; what = "fcntl(F_DUPFD_CLOEXEC)"; break; }
    parked[nparked++] = p;
    err = posix_spawn_file_actions_adddup2(&fa, p, (int)i);
  }
  /* Nothing else of ours reaches the child, close-on-exec or not (an fd some library left
   * inheritable would otherwise live as long as the agent). glibc 2.34. */
  if (!err) err = posix_spawn_file_actions_addclosefrom_np(&fa, (int)nfds);
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigemptyset(&none);
  if (!err) err = posix_spawnattr_setsigdefault(&attr, &all);
  if (!err) err = posix_spawnattr_setsigmask(&attr, &none);
  if (!err) err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (!err) {
    err = posix_spawn(&pid, path, &fa, &attr, args, environ);
    if (err) pid = -1;
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  for (uint32_t i = 0; i < nparked; i++) close(parked[i]);
  free_strings(args, got);
  free(path);
  if (err) { sw_throw_errno(env, what, err); return NULL; }

  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    err = errno;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    sw_throw_errno(env, "pidfd_open", err);
    return NULL;
  }
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return sw_int_pair(env, pid, pidfd);
}

static napi_value js_reap_pid(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t pid;
  if (argc < 1 || !sw_get_int(env, argv[0], "pid", 1, INT_MAX, &pid)) {
    if (argc < 1) sw_throw_type(env, "reapPid(pid)");
    return NULL;
  }
  int st;
  pid_t r;
  while ((r = waitpid((pid_t)pid, &st, WNOHANG)) < 0 && errno == EINTR) {}
  if (r < 0) { sw_throw_errno(env, "waitpid", errno); return NULL; }
  if (r == 0) {
    napi_value v;
    napi_get_null(env, &v);
    return v;
  }
  return sw_int_pair(env, WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

napi_value sw_init_spawn(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
    { "spawnFds", NULL, js_spawn_fds, NULL, NULL, NULL, napi_enumerable, NULL },
    { "reapPid", NULL, js_reap_pid, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  NAPI_OK(env, napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
  return exports;
}
