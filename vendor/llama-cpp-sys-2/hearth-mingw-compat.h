/*
 * Hearth: forced into every C file of llama.cpp when it is built for a MinGW target (build.rs,
 * `-include`), never for other targets. See vendor/README.md in the Hearth repository.
 *
 * ggml-cpu.c turns off Windows' power throttling of its worker threads with
 * THREAD_POWER_THROTTLING_STATE, which mingw-w64 10 (Debian 12) does not declare (its winbase.h
 * has only the ThreadPowerThrottling enumerator). These are the Windows SDK's definitions
 * (processthreadsapi.h); ULONG is unsigned long on Windows. Newer mingw-w64 headers declare
 * them themselves, so this only applies up to version 10.
 */
#ifndef HEARTH_MINGW_COMPAT_H
#define HEARTH_MINGW_COMPAT_H
#include <_mingw.h>
#if defined(__MINGW64_VERSION_MAJOR) && __MINGW64_VERSION_MAJOR <= 10
#define THREAD_POWER_THROTTLING_CURRENT_VERSION 1
#define THREAD_POWER_THROTTLING_EXECUTION_SPEED 0x1
#define THREAD_POWER_THROTTLING_VALID_FLAGS (THREAD_POWER_THROTTLING_EXECUTION_SPEED)
typedef struct _THREAD_POWER_THROTTLING_STATE {
    unsigned long Version;
    unsigned long ControlMask;
    unsigned long StateMask;
} THREAD_POWER_THROTTLING_STATE;
#endif
#endif
