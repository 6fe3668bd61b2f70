/*
 * ytbridge --doctor: live checks of everything the configuration points at, one line each
 * ("OK", "WARN", "FAIL", "SKIP" and the reason), without posting any message.
 */
#ifndef YTB_DOCTOR_H
#define YTB_DOCTOR_H

#include <uv.h>

#include "conf.h"

/* Runs every check on loop (which it runs). Returns 0 when nothing failed, else 1. */
int doctor_run(uv_loop_t *loop, const struct conf *conf);

#endif
