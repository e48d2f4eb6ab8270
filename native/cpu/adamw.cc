#include "adamw.h"

#include <cmath>
#include <string>

#include "../core/adamw.h"
#include "../core/errors.h"

namespace moekit::cpu {

void checkAdamW(const AdamWConfig& c, int64_t step) {
  auto fail = [](const std::string& name, const std::string& expected, double got) {
    throw Error(ErrorKind::Argument,
                "AdamW: " + name + " must be " + expected + ", got " + std::to_string(got));
  };
  if (!(c.lr >= 0) || !std::isfinite(c.lr)) fail("lr", "a finite number >= 0", c.lr);
  if (!(c.beta1 >= 0 && c.beta1 < 1)) fail("beta1", "in [0, 1)", c.beta1);
  if (!(c.beta2 >= 0 && c.beta2 < 1)) fail("beta2", "in [0, 1)", c.beta2);
  if (!(c.eps > 0) || !std::isfinite(c.eps)) fail("eps", "a finite number > 0", c.eps);
  if (!(c.weightDecay >= 0) || !std::isfinite(c.weightDecay))
    fail("weightDecay", "a finite number >= 0", c.weightDecay);
  if (step < 1) fail("step", "an integer >= 1", double(step));
}

bool checkAdamWStep(const float* param, const float* grad, const float* m, const float* v,
                    int64_t count, const AdamWConfig& c, int64_t step) {
  checkAdamW(c, step);
  if (count < 0)
    throw Error(ErrorKind::Shape, "AdamW: count must be >= 0, got " + std::to_string(count));
  if (count == 0) return false;
  if (!param || !grad || !m || !v)
    throw Error(ErrorKind::Argument, std::string("AdamW: ") +
                                         (!param ? "param" : !grad ? "grad" : !m ? "m" : "v") +
                                         " must not be null");
  return true;
}

void adamwStep(float* param, const float* grad, float* m, float* v, int64_t count,
               const AdamWConfig& c, int64_t step) {
  if (!checkAdamWStep(param, grad, m, v, count, c, step)) return;
  const adamw::Scalars s = adamw::adamwScalars(c.lr, c.beta1, c.beta2, c.eps, c.weightDecay, step);
  for (int64_t i = 0; i < count; ++i) adamw::adamwUpdate(s, grad[i], param[i], m[i], v[i]);
}

}  // namespace moekit::cpu
