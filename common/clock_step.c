#include "common/clock_step.h"

int64_t sl_clock_step(sl_clock_ref_t *ref, int64_t wall_ns, uint64_t mono_ns) {
  int64_t step = 0;
  if (ref->set && mono_ns >= ref->mono_ns) {
    uint64_t dm = mono_ns - ref->mono_ns;
    int64_t dw, tol;
    /* Saturating: a wall clock near the int64 limits is nonsense anyway. */
    if (__builtin_sub_overflow(wall_ns, ref->wall_ns, &dw))
      dw = wall_ns < ref->wall_ns ? INT64_MIN / 2 : INT64_MAX / 2;
    if (dm > (uint64_t)INT64_MAX / 2)
      dm = (uint64_t)INT64_MAX / 2;
    tol = SL_CLOCK_STEP_MIN_NS +
          (int64_t)(dm / 1000000u * SL_CLOCK_STEP_SLEW_PPM);
    step = dw - (int64_t)dm;
    if (step > -tol && step < tol)
      step = 0;
  }
  ref->wall_ns = wall_ns;
  ref->mono_ns = mono_ns;
  ref->set = true;
  return step;
}
