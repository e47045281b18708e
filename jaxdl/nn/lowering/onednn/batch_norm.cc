// oneDNN's batch normalisation in training as XLA FFI custom calls, over [rows, channels] (every axis but the
// channels is a row: NHWC images as they are): forward (the normalised output and the batch's mean and biased
// variance) and backward (the gradients of the input, the scale and the shift, the statistics' dependence on
// the input included).
//
// XLA computes the same as separate loops: the statistics' reductions, the normalisation, and in the backward
// pass two more reductions and the input gradient; oneDNN's kernels make one or two passes over the data each.
#include <cstdio>
#include <string>

#include "common.h"

using dnnl::memory;
using namespace jaxdl_onednn;

namespace batch_norm_kernels {

const auto kFlags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

struct Shape {
  int64_t rows, channels;
  float epsilon;

  std::string Key(char pass) const {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "bn%c|%ld,%ld|%.9g", pass, rows, channels, epsilon);
    return buf;
  }
  // [rows, channels] as one channels-last image of rows x 1 pixels: oneDNN's kernels split such an image's
  // pixels among threads, where rows of 1 x 1 images ran 2.5x slower (measured at 131072 x 16).
  memory::desc Data() const {
    return memory::desc({1, channels, rows, 1}, memory::data_type::f32, memory::format_tag::nhwc);
  }
  memory::desc Channels() const { return memory::desc({channels}, memory::data_type::f32, memory::format_tag::a); }
};

ffi::Error ToShape(ffi::AnyBuffer x, ffi::AnyBuffer scale, float epsilon, Shape* s) {
  auto dims = x.dimensions();
  if (dims.size() == 0 || scale.dimensions().size() != 1 || scale.dimensions()[0] != dims.back())
    return ffi::Error::InvalidArgument("jaxdl onednn batch_norm: expected [..., channels] and [channels] operands");
  if (x.element_type() != ffi::DataType::F32)
    return ffi::Error::InvalidArgument("jaxdl onednn batch_norm: only float32 is supported");
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) rows *= dims[i];
  *s = Shape{rows, dims.back(), epsilon};
  return ffi::Error::Success();
}

dnnl::batch_normalization_forward::primitive_desc ForwardDesc(const Shape& s) {
  return dnnl::batch_normalization_forward::primitive_desc(Engine(), dnnl::prop_kind::forward_training, s.Data(),
                                                          s.Data(), s.epsilon, kFlags, UserScratchpad());
}

struct Plan {
  dnnl::primitive norm;
  memory::desc scratch;
};

PlanCache<Plan> plans;

memory At(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

void Execute(const Plan& plan, std::unordered_map<int, memory> args) {
  dnnl::stream stream(Engine());
  args[DNNL_ARG_SCRATCHPAD] = At(plan.scratch, Scratch(plan.scratch.get_size(), 0));
  plan.norm.execute(stream, args);
  stream.wait();
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer shift, ffi::Result<ffi::AnyBuffer> y,
                   ffi::Result<ffi::AnyBuffer> mean, ffi::Result<ffi::AnyBuffer> variance, float epsilon) {
  Shape s;
  if (auto e = ToShape(x, scale, epsilon, &s); e.failure()) return e;
  return Guard("batch_norm", [&] {
    auto plan = plans.Get(s.Key('f'), [&] {
      auto pd = ForwardDesc(s);
      return Plan{dnnl::batch_normalization_forward(pd), pd.scratchpad_desc()};
    });
    Execute(*plan, {{DNNL_ARG_SRC, At(s.Data(), x.untyped_data())},
                    {DNNL_ARG_SCALE, At(s.Channels(), scale.untyped_data())},
                    {DNNL_ARG_SHIFT, At(s.Channels(), shift.untyped_data())},
                    {DNNL_ARG_DST, At(s.Data(), y->untyped_data())},
                    {DNNL_ARG_MEAN, At(s.Channels(), mean->untyped_data())},
                    {DNNL_ARG_VARIANCE, At(s.Channels(), variance->untyped_data())}});
  });
}

ffi::Error Backward(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer mean, ffi::AnyBuffer variance,
                    ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> dscale,
                    ffi::Result<ffi::AnyBuffer> dshift, float epsilon) {
  Shape s;
  if (auto e = ToShape(x, scale, epsilon, &s); e.failure()) return e;
  return Guard("batch_norm", [&] {
    auto plan = plans.Get(s.Key('b'), [&] {
      dnnl::batch_normalization_backward::primitive_desc pd(Engine(), dnnl::prop_kind::backward, s.Data(), s.Data(),
                                                            s.Data(), s.epsilon, kFlags, ForwardDesc(s),
                                                            UserScratchpad());
      return Plan{dnnl::batch_normalization_backward(pd), pd.scratchpad_desc()};
    });
    Execute(*plan, {{DNNL_ARG_SRC, At(s.Data(), x.untyped_data())},
                    {DNNL_ARG_SCALE, At(s.Channels(), scale.untyped_data())},
                    {DNNL_ARG_MEAN, At(s.Channels(), mean.untyped_data())},
                    {DNNL_ARG_VARIANCE, At(s.Channels(), variance.untyped_data())},
                    {DNNL_ARG_DIFF_DST, At(s.Data(), dy.untyped_data())},
                    {DNNL_ARG_DIFF_SRC, At(s.Data(), dx->untyped_data())},
                    {DNNL_ARG_DIFF_SCALE, At(s.Channels(), dscale->untyped_data())},
                    {DNNL_ARG_DIFF_SHIFT, At(s.Channels(), dshift->untyped_data())}});
  });
}

}  // namespace batch_norm_kernels

#pragma GCC visibility push(default)
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_batch_norm_forward, batch_norm_kernels::Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_batch_norm_backward, batch_norm_kernels::Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon"));
#pragma GCC visibility pop
