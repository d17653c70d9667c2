/* coro_switch_aarch64: the context switch of lib/async/coro.c for AArch64 (AAPCS64).
 *
 * void async__coro_switch(void **save_sp, void *load_sp)
 *   Stores what the ABI makes callee-saved (x19-x28, the frame pointer x29, the link register x30
 *   and the low halves d8-d15 of v8-v15) in a 160-byte frame on the current stack, stores the stack
 *   pointer in *save_sp, loads load_sp and restores the same frame from there, returning through the
 *   x30 it held. No signal mask, no system call (see coro_switch_x86_64.S).
 *
 * async__coro_trampoline: where a new coroutine's first switch returns to; lib/async/coro.c's initial
 *   frame puts the coroutine in x19 and this address in x30, with sp 16-byte aligned after the
 *   frame is popped. async__coro_main never returns. */
    .text
    .globl async__coro_switch
    .hidden async__coro_switch
    .type async__coro_switch, %function
    .p2align 4
async__coro_switch:
    .cfi_startproc
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret
    .cfi_endproc
    .size async__coro_switch, .-async__coro_switch

    .globl async__coro_trampoline
    .hidden async__coro_trampoline
    .type async__coro_trampoline, %function
    .p2align 4
async__coro_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov x0, x19
    bl async__coro_main
    brk #0
    .cfi_endproc
    .size async__coro_trampoline, .-async__coro_trampoline

    .section .note.GNU-stack,"",%progbits
