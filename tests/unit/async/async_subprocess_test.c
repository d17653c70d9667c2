/* async_subprocess_test: unit tests for async_subprocess (lib/async/async_subprocess.c) with real programs
 * from the base system (/bin/sh, cat, sleep): exit status, stdin and output capture with its bound,
 * no shell between argv and the program, a spawn failure, the SIGTERM-then-SIGKILL timeout,
 * cancellation and the scope ending (the child is killed and reaped, nothing of the scope is touched
 * after), all on a real libevent loop. */
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "async.h"

static struct event_base *base;
static async_scope *scope;
static int ran;

static void proc_test_setup(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
    scope = async_scope_new(base);
    ran = 0;
}

static void proc_test_teardown(void)
{
    if (scope)
        async_scope_free(scope);
    cr_assert_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0, "an event was left behind");
    event_base_free(base);
}

TestSuite(async_subprocess, .init = proc_test_setup, .fini = proc_test_teardown, .timeout = 30);

static void count(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    ran++;
}

static void must_not_run(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    cr_assert_fail("the continuation of a cancelled subprocess ran");
}

static async_op *run_argv(const char *const *argv, const char *input, size_t max_out, unsigned timeout_ms)
{
    async_subprocess_options o = {.argv = argv, .stdin_data = input, .stdin_len = input ? strlen(input) : 0,
                                  .max_output_bytes = max_out, .timeout_ms = timeout_ms, .kill_grace_ms = 200};
    async_op *op = async_subprocess(scope, &o);
    async_op_then(op, count, NULL);
    event_base_dispatch(base);
    cr_assert_eq(ran, 1, "the continuation runs once");
    return op;
}

/* True once the process is gone and reaped (ours, so ECHILD means someone reaped it: we did). */
static bool reaped(int pid) { return waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD && kill(pid, 0) != 0; }

Test(async_subprocess, exit_status_and_both_streams)
{
    const char *argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    async_op *op = run_argv(argv, NULL, 0, 0);
    cr_assert_eq(op->status, ASYNC_OK, "a non-zero exit is a result: %s", op->error ? op->error : "");
    const async_subprocess_result *r = op->value;
    cr_assert_eq(r->exit_code, 3);
    cr_assert_eq(r->term_signal, 0);
    cr_assert_not(r->timed_out);
    cr_assert_str_eq(r->out, "out\n");
    cr_assert_str_eq(r->err, "err\n");
    cr_assert(reaped(r->pid));
}

Test(async_subprocess, stdin_bytes_reach_the_child)
{
    const char *argv[] = {"cat", NULL}; /* found in PATH */
    async_op *op = run_argv(argv, "hello\nworld", 0, 0);
    cr_assert_eq(op->status, ASYNC_OK);
    const async_subprocess_result *r = op->value;
    cr_assert_eq(r->exit_code, 0);
    cr_assert_eq(r->out_len, 11);
    cr_assert_str_eq(r->out, "hello\nworld");
}

Test(async_subprocess, no_stdin_is_dev_null)
{
    const char *argv[] = {"cat", NULL};
    async_op *op = run_argv(argv, NULL, 0, 0);
    cr_assert_eq(op->status, ASYNC_OK);
    cr_assert_eq(((const async_subprocess_result *)op->value)->out_len, 0);
}

Test(async_subprocess, argv_goes_to_the_program_without_a_shell)
{
    const char *argv[] = {"/bin/echo", "$HOME", "a b", ";", "*", NULL};
    async_op *op = run_argv(argv, NULL, 0, 0);
    cr_assert_eq(op->status, ASYNC_OK);
    cr_assert_str_eq(((const async_subprocess_result *)op->value)->out, "$HOME a b ; *\n");
}

Test(async_subprocess, output_beyond_the_bound_is_dropped_and_flagged)
{
    /* 200 KiB, far more than a pipe holds: the child finishes only because we keep reading. */
    const char *argv[] = {"/bin/sh", "-c", "head -c 204800 /dev/zero", NULL};
    async_op *op = run_argv(argv, NULL, 1000, 0);
    cr_assert_eq(op->status, ASYNC_OK);
    const async_subprocess_result *r = op->value;
    cr_assert_eq(r->exit_code, 0);
    cr_assert_eq(r->out_len, 1000);
    cr_assert(r->out_truncated);
    cr_assert_not(r->err_truncated);
}

Test(async_subprocess, a_program_that_does_not_exist_fails_to_spawn)
{
    const char *argv[] = {"/nonexistent/program", NULL};
    async_op *op = run_argv(argv, NULL, 0, 0);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_assert_str_eq(op->error, "spawn_failed");
    cr_assert_null(op->value);
    const char *empty[] = {NULL};
    async_subprocess_options o = {.argv = empty};
    cr_assert_eq(async_subprocess(scope, &o)->status, ASYNC_FAILED);
}

Test(async_subprocess, timeout_sends_sigterm)
{
    const char *argv[] = {"sleep", "30", NULL};
    async_op *op = run_argv(argv, NULL, 0, 50);
    cr_assert_eq(op->status, ASYNC_TIMEOUT);
    cr_assert_str_eq(op->error, "timeout");
    const async_subprocess_result *r = op->value;
    cr_assert(r->timed_out);
    cr_assert_eq(r->term_signal, SIGTERM);
    cr_assert(reaped(r->pid));
}

Test(async_subprocess, timeout_sigkills_a_child_that_ignores_sigterm)
{
    /* The shell ignores TERM and tells us when it has set that up, so the SIGTERM cannot come first. */
    const char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done", NULL};
    async_op *op = run_argv(argv, NULL, 0, 1000); /* ample time for the shell to set its trap */
    cr_assert_eq(op->status, ASYNC_TIMEOUT);
    const async_subprocess_result *r = op->value;
    cr_assert_str_eq(r->out, "ready\n");
    cr_assert_eq(r->term_signal, SIGKILL, "ended by the SIGKILL after the grace period, got %d", r->term_signal);
    cr_assert(reaped(r->pid));
}

static uint64_t proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

Test(async_subprocess, timeout_reaches_a_child_that_left_its_process_group)
{
    /* Issue 18: the child moves into our (the test's) process group, so a signal to its own group
     * misses it; it used to run to its own end past the timeout. Python is there for the
     * integration tests (-S -E: no site import, it starts faster); the child says when it has moved,
     * and ignores TERM so the SIGKILL after the grace is what must reach it. The timeout leaves a
     * loaded machine seconds to start Python; the child would otherwise live 30 s. */
    const char *argv[] = {"python3", "-S", "-E", "-c",
                          "import os, signal, sys, time\n"
                          "os.setpgid(0, os.getpgid(os.getppid()))\n"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                          "print('moved', flush=True)\n"
                          "time.sleep(30)\n",
                          NULL};
    uint64_t t0 = proc_now_ms();
    async_op *op = run_argv(argv, NULL, 0, 3000);
    uint64_t took = proc_now_ms() - t0;
    cr_assert_eq(op->status, ASYNC_TIMEOUT);
    const async_subprocess_result *r = op->value;
    cr_assert_str_eq(r->out, "moved\n", "the child moved out of its group (stderr: %s)", r->err);
    cr_assert_eq(r->term_signal, SIGKILL, "the SIGKILL after the grace reached it, got signal %d exit %d",
                 r->term_signal, r->exit_code);
    cr_assert_lt(took, 15000, "timeout 3000 ms + grace 200 ms, far from the child's own 30 s; took %llu ms",
                 (unsigned long long)took);
    cr_assert(reaped(r->pid));
}

Test(async_subprocess, the_default_environment_is_minimal)
{
    /* Issue 18: children used to inherit the server's whole environment, APIARY_SQL_URL with its
     * password included. */
    setenv("APIARY_SQL_URL", "mysql://app:secret@db:3306/app", 1);
    setenv("LANG", "C.UTF-8", 1);
    const char *argv[] = {"env", NULL};
    async_op *op = run_argv(argv, NULL, 0, 0);
    const async_subprocess_result *r = op->value;
    cr_assert_eq(r->exit_code, 0);
    cr_assert_null(strstr(r->out, "secret"), "a secret leaked: %s", r->out);
    cr_assert_null(strstr(r->out, "APIARY_SQL_URL"), "got: %s", r->out);
    cr_assert_not_null(strstr(r->out, "PATH="), "got: %s", r->out);
    cr_assert_not_null(strstr(r->out, "LANG=C.UTF-8\n"), "got: %s", r->out);
    unsetenv("APIARY_SQL_URL");
}

Test(async_subprocess, envp_adds_and_replaces_and_inherit_is_explicit)
{
    setenv("APIARY_TEST_SECRET", "s3", 1);
    const char *argv[] = {"env", NULL};
    const char *envp[] = {"FOO=bar", "PATH=/bin:/usr/bin", NULL};
    async_subprocess_options o = {.argv = argv, .envp = envp};
    async_op *op = async_subprocess(scope, &o);
    async_op_then(op, count, NULL);
    event_base_dispatch(base);
    const async_subprocess_result *r = op->value;
    cr_assert_not_null(strstr(r->out, "FOO=bar\n"), "got: %s", r->out);
    cr_assert_not_null(strstr(r->out, "PATH=/bin:/usr/bin\n"), "got: %s", r->out);
    cr_assert_null(strstr(strstr(r->out, "PATH=") + 1, "PATH="), "PATH twice: %s", r->out);
    cr_assert_null(strstr(r->out, "APIARY_TEST_SECRET"), "got: %s", r->out);

    async_subprocess_options inherit = {.argv = argv, .envp = envp, .inherit_env = true};
    op = async_subprocess(scope, &inherit);
    async_op_then(op, count, NULL);
    event_base_dispatch(base);
    r = op->value;
    cr_assert_not_null(strstr(r->out, "APIARY_TEST_SECRET=s3\n"), "inherited on request: %s", r->out);
    cr_assert_not_null(strstr(r->out, "FOO=bar\n"), "got: %s", r->out);
    unsetenv("APIARY_TEST_SECRET");
}

Test(async_subprocess, cancel_kills_and_reaps_the_child)
{
    const char *argv[] = {"sleep", "30", NULL};
    async_subprocess_options o = {.argv = argv};
    async_op *op = async_subprocess(scope, &o);
    async_op_then(op, must_not_run, NULL);
    cr_assert_eq(op->status, ASYNC_PENDING);
    async_op_cancel(op);
    cr_assert_eq(op->status, ASYNC_CANCELLED);
    event_base_dispatch(base); /* the detached reaper, if the child was not dead yet */
    cr_assert(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "no child is left, not even a zombie");
}

Test(async_subprocess, wait_for_around_it_cancels_and_reaps)
{
    const char *argv[] = {"sleep", "30", NULL};
    async_subprocess_options o = {.argv = argv};
    async_op *w = async_wait_for(scope, async_subprocess(scope, &o), 50);
    async_op_then(w, count, NULL);
    event_base_dispatch(base);
    cr_assert_eq(ran, 1);
    cr_assert_eq(w->status, ASYNC_TIMEOUT);
    cr_assert(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

Test(async_subprocess, scope_end_kills_and_reaps_and_drops_the_input)
{
    static char big[1 << 20]; /* more stdin than the socket holds: a write is pending at scope end */
    memset(big, 'x', sizeof(big));
    const char *argv[] = {"/bin/sh", "-c", "sleep 30", NULL};
    async_scope *other = async_scope_new(base);
    async_subprocess_options o = {.argv = argv, .stdin_data = big, .stdin_len = sizeof(big)};
    async_op_then(async_subprocess(other, &o), must_not_run, NULL);
    async_scope_free(other);
    event_base_dispatch(base);
    cr_assert(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

Test(async_subprocess, many_at_once_each_get_their_own_result)
{
    enum { N = 8 };
    async_op *ops[N];
    char scripts[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(scripts[i], sizeof(scripts[i]), "exit %d", i);
        const char *argv[] = {"/bin/sh", "-c", scripts[i], NULL};
        async_subprocess_options o = {.argv = argv};
        ops[i] = async_subprocess(scope, &o);
    }
    async_op *all = async_gather(scope, ops, N, ASYNC_GATHER_ALL);
    async_op_then(all, count, NULL);
    event_base_dispatch(base);
    for (int i = 0; i < N; i++)
        cr_assert_eq(((const async_subprocess_result *)ops[i]->value)->exit_code, i);
}
