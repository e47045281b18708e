// oneDNN convolutions as XLA FFI custom calls: forward, gradient of the input (backward data) and gradient of
// the kernel (backward weights), on NHWC images and HWIO kernels (JAX's layouts, so no transposes in JAX).
//
// Each call looks up, by its geometry, a primitive built once per process: oneDNN chooses the kernel layout
// ("any") and the primitive reorders the HWIO kernel into it on each call, which costs far less than the
// convolution. Scratch memory is the calling thread's own buffer, so calls from XLA's threads never share it.
// Algorithms are fixed (direct convolution), so the same inputs give the same bits on the same machine.
#include <cstdio>
#include <string>

#include "common.h"

using dnnl::memory;
using namespace jaxdl_onednn;

namespace conv_kernels {

// What identifies one convolution: shapes, window, groups and dtype.
struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, groups;
  int64_t sh, sw, pt, pb, pl, pr, dh, dw;
  memory::data_type dtype;

  std::string Key(char pass) const {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%c|%ld,%ld,%ld,%ld|%ld,%ld,%ld|%ld,%ld|%ld|%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld|%d",
                  pass, n, h, w, c, kh, kw, o, oh, ow, groups, sh, sw, pt, pb, pl, pr, dh, dw, int(dtype));
    return buf;
  }
  memory::desc Image(int64_t height, int64_t width, int64_t channels) const {
    return memory::desc({n, channels, height, width}, dtype,
                        memory::dims{height * width * channels, 1, width * channels, channels});
  }
  memory::desc Source() const { return Image(h, w, c); }
  memory::desc Destination() const { return Image(oh, ow, o); }
  // The HWIO kernel in oneDNN's (G)OIHW dimension order, by strides.
  memory::desc Kernel() const {
    const int64_t ig = c / groups, og = o / groups;
    if (groups == 1) return memory::desc({o, c, kh, kw}, dtype, memory::dims{1, o, kw * c * o, c * o});
    return memory::desc({groups, og, ig, kh, kw}, dtype, memory::dims{og, 1, o, kw * ig * o, ig * o});
  }
  memory::desc AnyKernel() const {
    const int64_t ig = c / groups, og = o / groups;
    if (groups == 1) return memory::desc({o, c, kh, kw}, dtype, memory::format_tag::any);
    return memory::desc({groups, og, ig, kh, kw}, dtype, memory::format_tag::any);
  }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims Dilation() const { return {dh - 1, dw - 1}; }
  memory::dims PadLow() const { return {pt, pl}; }
  memory::dims PadHigh() const { return {pb, pr}; }
};

ffi::Error ToGeometry(ffi::AnyBuffer image, ffi::AnyBuffer::Dimensions kernel, ffi::AnyBuffer::Dimensions out,
                      ffi::Span<const int64_t> window, int64_t groups, Geometry* g) {
  auto in = image.dimensions();
  if (in.size() != 4 || kernel.size() != 4 || out.size() != 4 || window.size() != 8 || groups < 1)
    return ffi::Error::InvalidArgument("jaxdl onednn conv: expected rank-4 NHWC/HWIO operands and 8 window values");
  switch (image.element_type()) {
    case ffi::DataType::F32: g->dtype = memory::data_type::f32; break;
    case ffi::DataType::BF16: g->dtype = memory::data_type::bf16; break;
    default: return ffi::Error::InvalidArgument("jaxdl onednn conv: only float32 and bfloat16 are supported");
  }
  *g = Geometry{in[0], in[1], in[2], in[3], kernel[0], kernel[1], kernel[3], out[1], out[2], groups,
                window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7], g->dtype};
  if (g->c % groups || g->o % groups || kernel[2] != g->c / groups)
    return ffi::Error::InvalidArgument("jaxdl onednn conv: channels do not divide into the groups");
  return ffi::Error::Success();
}

// A primitive with the reorder between the caller's HWIO kernel and the layout it chose.
struct Plan {
  dnnl::primitive conv;
  memory::desc kernel_desc;   // the layout the primitive wants
  bool reorder = false;
  dnnl::reorder to_kernel;    // HWIO -> kernel_desc (forward, backward data) or kernel_desc -> HWIO (weights)
  memory::desc scratch;      // the primitive's scratchpad
  bool kernel_is_output = false;  // backward weights writes the kernel; the others read it
};

// The plan for a primitive that wants its kernel in `chosen`: a reorder from the caller's HWIO kernel, or
// back to it when the kernel is the primitive's output, unless the two layouts are the same.
Plan MakePlan(dnnl::primitive conv, const memory::desc& chosen, const memory::desc& scratch, const Geometry& g,
              bool kernel_is_output) {
  Plan p{conv, chosen, chosen != g.Kernel(), {}, scratch, kernel_is_output};
  if (p.reorder)
    p.to_kernel = kernel_is_output ? dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), chosen, Engine(), g.Kernel()))
                                   : dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), g.Kernel(), Engine(), chosen));
  return p;
}

PlanCache<Plan> plans;

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g, dnnl::prop_kind prop) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), prop, dnnl::algorithm::convolution_direct, g.Source(), g.AnyKernel(), g.Destination(), g.Strides(),
      g.Dilation(), g.PadLow(), g.PadHigh(), UserScratchpad());
}

// Runs `plan` with `args`, after moving the kernel between HWIO (`user_kernel`) and the primitive's layout.
void Run(const Plan& plan, std::unordered_map<int, memory> args, int kernel_arg, void* user_kernel,
         const memory::desc& user_desc) {
  const bool kernel_is_output = plan.kernel_is_output;
  dnnl::stream stream(Engine());
  memory user(user_desc, Engine(), user_kernel);
  memory chosen = plan.reorder ? memory(plan.kernel_desc, Engine(), Scratch(plan.kernel_desc.get_size(), 1)) : user;
  if (plan.reorder && !kernel_is_output) plan.to_kernel.execute(stream, user, chosen);
  args[kernel_arg] = chosen;
  args[DNNL_ARG_SCRATCHPAD] = memory(plan.scratch, Engine(), Scratch(plan.scratch.get_size(), 0));
  plan.conv.execute(stream, args);
  if (plan.reorder && kernel_is_output) plan.to_kernel.execute(stream, chosen, user);
  stream.wait();
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> y,
                   ffi::Span<const int64_t> window, int64_t groups) {
  Geometry g;
  if (auto e = ToGeometry(x, kernel.dimensions(), y->dimensions(), window, groups, &g); e.failure()) return e;
  return Guard("conv", [&] {
    auto plan = plans.Get(g.Key('f'), [&] {
      auto pd = ForwardDesc(g, dnnl::prop_kind::forward_inference);
      return MakePlan(dnnl::convolution_forward(pd), pd.weights_desc(), pd.scratchpad_desc(), g, false);
    });
    Run(*plan, {{DNNL_ARG_SRC, memory(g.Source(), Engine(), x.untyped_data())},
                {DNNL_ARG_DST, memory(g.Destination(), Engine(), y->untyped_data())}},
        DNNL_ARG_WEIGHTS, kernel.untyped_data(), g.Kernel());
  });
}

ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Span<const int64_t> window, int64_t groups) {
  Geometry g;
  // The geometry is the forward one: dx is the image, dy the output.
  if (auto e = ToGeometry(*dx, kernel.dimensions(), dy.dimensions(), window, groups, &g); e.failure()) return e;
  return Guard("conv", [&] {
    auto plan = plans.Get(g.Key('d'), [&] {
      auto hint = ForwardDesc(g, dnnl::prop_kind::forward_training);
      dnnl::convolution_backward_data::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, g.Source(), g.AnyKernel(), g.Destination(), g.Strides(),
          g.Dilation(), g.PadLow(), g.PadHigh(), hint, UserScratchpad());
      return MakePlan(dnnl::convolution_backward_data(pd), pd.weights_desc(), pd.scratchpad_desc(), g, false);
    });
    Run(*plan, {{DNNL_ARG_DIFF_DST, memory(g.Destination(), Engine(), dy.untyped_data())},
                {DNNL_ARG_DIFF_SRC, memory(g.Source(), Engine(), dx->untyped_data())}},
        DNNL_ARG_WEIGHTS, kernel.untyped_data(), g.Kernel());
  });
}

ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dkernel,
                           ffi::Span<const int64_t> window, int64_t groups) {
  Geometry g;
  if (auto e = ToGeometry(x, dkernel->dimensions(), dy.dimensions(), window, groups, &g); e.failure()) return e;
  return Guard("conv", [&] {
    auto plan = plans.Get(g.Key('w'), [&] {
      auto hint = ForwardDesc(g, dnnl::prop_kind::forward_training);
      dnnl::convolution_backward_weights::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, g.Source(), g.AnyKernel(), g.Destination(), g.Strides(),
          g.Dilation(), g.PadLow(), g.PadHigh(), hint, UserScratchpad());
      return MakePlan(dnnl::convolution_backward_weights(pd), pd.diff_weights_desc(), pd.scratchpad_desc(), g, true);
    });
    Run(*plan, {{DNNL_ARG_SRC, memory(g.Source(), Engine(), x.untyped_data())},
                {DNNL_ARG_DIFF_DST, memory(g.Destination(), Engine(), dy.untyped_data())}},
        DNNL_ARG_DIFF_WEIGHTS, dkernel->untyped_data(), g.Kernel());
  });
}

}  // namespace conv_kernels

#define JAXDL_CONV_BINDING                                                                            \
  ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Attr<ffi::Span<const int64_t>>( \
      "window").Attr<int64_t>("groups")

// Only the handlers are exported (the library is compiled with hidden visibility).
#pragma GCC visibility push(default)
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_conv_forward, conv_kernels::Forward, JAXDL_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_conv_backward_data, conv_kernels::BackwardData, JAXDL_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_conv_backward_weights, conv_kernels::BackwardWeights, JAXDL_CONV_BINDING);
#pragma GCC visibility pop
