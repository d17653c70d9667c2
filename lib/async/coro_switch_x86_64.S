/* coro_switch_x86_64: the context switch of lib/async/coro.c for x86-64 (System V ABI).
 *
 * void async__coro_switch(void **save_sp, void *load_sp)
 *   Pushes the callee-saved registers (rbx, rbp, r12-r15) on the current stack, stores the stack
 *   pointer in *save_sp, loads load_sp and pops the same frame from there, returning into whoever
 *   saved it. Everything caller-saved is already saved by the compiler around the call, so this is
 *   the whole state of a suspended C function, with two deliberate omissions (as lwan and libco):
 *   - no signal mask (ucontext's swapcontext makes an rt_sigprocmask system call for it on every
 *     switch): a coroutine never changes its signal mask;
 *   - not the MXCSR control bits and the x87 control word, which the ABI also makes callee-saved:
 *     saving and restoring them (ldmxcsr, fldcw) took a suspend+resume pair from about 20 to 26-40 ns
 *     here. They are the thread's rounding mode and exception masks, which no code on a loop thread
 *     may leave changed when it returns to the loop anyway (a continuation that did would change them
 *     for every other request of the loop); an await is such a return. docs/async.md says so.
 *
 * async__coro_trampoline: where a new coroutine's first switch "returns" to. lib/async/coro.c builds the
 *   initial frame: r12 holds the coroutine, and the frame leaves rsp 16-byte aligned here, so the
 *   call below meets the ABI's alignment. async__coro_main never returns (it switches away for the
 *   last time). CET: the switch returns with `ret` to an address the shadow stack never saw, so it
 *   needs a shadow-stack switch of its own where user shadow stacks are enforced; docs/async.md says
 *   why that is not the case here. */
    .text
    .globl async__coro_switch
    .hidden async__coro_switch
    .type async__coro_switch, @function
    .p2align 4
async__coro_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size async__coro_switch, .-async__coro_switch

    .globl async__coro_trampoline
    .hidden async__coro_trampoline
    .type async__coro_trampoline, @function
    .p2align 4
async__coro_trampoline:
    .cfi_startproc
    .cfi_undefined rip      /* the bottom of a coroutine's stack: debuggers stop unwinding here */
    movq %r12, %rdi
    call async__coro_main
    ud2
    .cfi_endproc
    .size async__coro_trampoline, .-async__coro_trampoline

    .section .note.GNU-stack,"",@progbits
