/* coro_switch_aarch64_check: proves lib/async/coro_switch_aarch64.S on a machine that is not aarch64, under
 * qemu-aarch64 (tests/CMakeLists.txt registers it when clang, ld.lld and qemu-aarch64 are there). No
 * libc: built freestanding and static for aarch64-linux, it exits through the exit system call.
 *
 * It builds a new coroutine's first frame as lib/async/coro.c does (x19 = the argument, x30 = the
 * trampoline), then 1,000 times: sets every callee-saved register (x19-x28, d8-d15) to a pattern,
 * switches into the coroutine, which checks its stack alignment, counts, overwrites every one of those
 * registers and switches back; then checks the pattern survived. Exit status 0: the switch keeps what
 * AAPCS64 says it must; anything else names what broke. */
#include <stdint.h>

void async__coro_switch(void **save_sp, void *load_sp);
void async__coro_trampoline(void);
/* check.S below: the pattern, the switch, the check (0: intact). */
long check_switch(void **save_sp, void *load_sp);
/* check.S below: overwrites every callee-saved register, switches, restores them for its C caller. */
void clobber_switch(void **save_sp, void *load_sp);

static void *main_sp, *co_sp;
static volatile unsigned long rounds;
static volatile int misaligned;
static unsigned char co_stack[64 * 1024] __attribute__((aligned(16)));

__attribute__((noreturn)) static void sys_exit(long code)
{
    register long x0 __asm__("x0") = code;
    register long x8 __asm__("x8") = 93; /* exit */
    __asm__ volatile("svc 0" : : "r"(x0), "r"(x8) : "memory");
    __builtin_unreachable();
}

void async__coro_main(void *arg) __attribute__((noreturn));
void async__coro_main(void *arg)
{
    if (arg != (void *)0x1234)
        sys_exit(2);
    for (;;) {
        if ((uintptr_t)__builtin_frame_address(0) & 15)
            misaligned = 1;
        rounds++;
        clobber_switch(&co_sp, main_sp);
    }
}

long c_main(void)
{
    uintptr_t top = ((uintptr_t)co_stack + sizeof(co_stack)) & ~(uintptr_t)15;
    void **f = (void **)top - 20;
    for (int i = 0; i < 20; i++)
        f[i] = 0;
    f[0] = (void *)0x1234;                             /* x19 */
    f[11] = (void *)(uintptr_t)async__coro_trampoline; /* x30 */
    co_sp = f;
    for (unsigned long i = 0; i < 1000; i++) {
        if (check_switch(&main_sp, co_sp) != 0)
            return 10; /* a callee-saved register changed across the switch */
        if (rounds != i + 1)
            return 11;
        if (misaligned)
            return 12;
    }
    return 0;
}

__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "    bl c_main\n"
        "    mov x8, #93\n"
        "    svc 0\n"

        ".globl check_switch\n"
        "check_switch:\n"
        "    sub sp, sp, #176\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mov x19, #119\n mov x20, #120\n mov x21, #121\n mov x22, #122\n mov x23, #123\n"
        "    mov x24, #124\n mov x25, #125\n mov x26, #126\n mov x27, #127\n mov x28, #128\n"
        "    mov x9, #208\n fmov d8, x9\n mov x9, #209\n fmov d9, x9\n mov x9, #210\n fmov d10, x9\n"
        "    mov x9, #211\n fmov d11, x9\n mov x9, #212\n fmov d12, x9\n mov x9, #213\n fmov d13, x9\n"
        "    mov x9, #214\n fmov d14, x9\n mov x9, #215\n fmov d15, x9\n"
        "    bl async__coro_switch\n"
        "    mov x0, #0\n"
        "    cmp x19, #119\n b.ne 1f\n cmp x20, #120\n b.ne 1f\n cmp x21, #121\n b.ne 1f\n"
        "    cmp x22, #122\n b.ne 1f\n cmp x23, #123\n b.ne 1f\n cmp x24, #124\n b.ne 1f\n"
        "    cmp x25, #125\n b.ne 1f\n cmp x26, #126\n b.ne 1f\n cmp x27, #127\n b.ne 1f\n"
        "    cmp x28, #128\n b.ne 1f\n"
        "    fmov x9, d8\n cmp x9, #208\n b.ne 1f\n fmov x9, d9\n cmp x9, #209\n b.ne 1f\n"
        "    fmov x9, d10\n cmp x9, #210\n b.ne 1f\n fmov x9, d11\n cmp x9, #211\n b.ne 1f\n"
        "    fmov x9, d12\n cmp x9, #212\n b.ne 1f\n fmov x9, d13\n cmp x9, #213\n b.ne 1f\n"
        "    fmov x9, d14\n cmp x9, #214\n b.ne 1f\n fmov x9, d15\n cmp x9, #215\n b.ne 1f\n"
        "    b 2f\n"
        "1:  mov x0, #1\n"
        "2:  ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #176\n"
        "    ret\n"

        ".globl clobber_switch\n"
        "clobber_switch:\n"
        "    sub sp, sp, #176\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mov x19, #1\n mov x20, #2\n mov x21, #3\n mov x22, #4\n mov x23, #5\n"
        "    mov x24, #6\n mov x25, #7\n mov x26, #8\n mov x27, #9\n mov x28, #10\n"
        "    movi d8, #0\n movi d9, #0\n movi d10, #0\n movi d11, #0\n"
        "    movi d12, #0\n movi d13, #0\n movi d14, #0\n movi d15, #0\n"
        "    bl async__coro_switch\n"
        "    ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #176\n"
        "    ret\n");
