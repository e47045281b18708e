// oneDNN's batch normalisation in training as XLA FFI custom calls, over [rows, channels] (every axis but the
// channels is a row: NHWC images as they are): forward (the normalised output and the batch's mean and biased
// variance) and backward (the gradients of the input, the scale and the shift, the statistics' dependence on
// the input included).
//
// XLA computes the same as separate loops: the statistics' reductions, the normalisation, and in the backward
// pass two more reductions and the input gradient; oneDNN's kernels make one or two passes over the data each.
//
// `fuse` adds what follows a normalisation in a CNN. 1: a ReLU in the normalisation's own passes (oneDNN's
// fuse_norm_relu); the forward pass writes a workspace of which outputs the ReLU kept (a bit or a byte per
// element, by implementation) that the backward pass masks the output gradient with. 2: the end of a residual
// block, relu(bn(x) + residual), which oneDNN's CPU normalisation cannot fuse: one binary add with a ReLU
// post-op after it, and in the backward pass one ReLU backward from the output (dst > 0: the output is kept
// anyway, as the next layer's input) that gives the residual's gradient, which the normalisation's backward
// pass then reads. Materialised here, the sum is computed once, where XLA re-derived each block's input from
// the chain of earlier blocks' sums inside every elementwise fusion that read it.
//
// Operands only XLA's computation of the same (on a batch split across devices) needs are not read here: the
// backward pass's shift (1 recomputes the mask from it).
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common.h"

using dnnl::memory;
using namespace jaxdl_onednn;

namespace batch_norm_kernels {

struct Shape {
  int64_t rows, channels;
  float epsilon;
  int64_t fuse;  // 0: none, 1: relu, 2: add a residual, then relu

  std::string Key(char pass) const {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "bn%c|%ld,%ld|%.9g|%ld", pass, rows, channels, epsilon, fuse);
    return buf;
  }
  dnnl::normalization_flags Flags() const {
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    if (fuse == 1) flags |= dnnl::normalization_flags::fuse_norm_relu;
    return flags;
  }
  // [rows, channels] as one channels-last image of rows x 1 pixels: oneDNN's kernels split such an image's
  // pixels among threads, where rows of 1 x 1 images ran 2.5x slower (measured at 131072 x 16).
  memory::desc Data() const {
    return memory::desc({1, channels, rows, 1}, memory::data_type::f32, memory::format_tag::nhwc);
  }
  memory::desc Channels() const { return memory::desc({channels}, memory::data_type::f32, memory::format_tag::a); }
};

ffi::Error ToShape(ffi::AnyBuffer x, ffi::AnyBuffer scale, float epsilon, int64_t fuse, Shape* s) {
  auto dims = x.dimensions();
  if (dims.size() == 0 || scale.dimensions().size() != 1 || scale.dimensions()[0] != dims.back())
    return ffi::Error::InvalidArgument("jaxdl onednn batch_norm: expected [..., channels] and [channels] operands");
  if (fuse < 0 || fuse > 2) return ffi::Error::InvalidArgument("jaxdl onednn batch_norm: fuse must be 0, 1 or 2");
  if (x.element_type() != ffi::DataType::F32)
    return ffi::Error::InvalidArgument("jaxdl onednn batch_norm: only float32 is supported");
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) rows *= dims[i];
  *s = Shape{rows, dims.back(), epsilon, fuse};
  return ffi::Error::Success();
}

// The residual-shaped buffers of fuse 2 (the residual, the output the backward pass reads, the residual's
// gradient) must have the input's size.
ffi::Error SameSize(const Shape& s, ffi::AnyBuffer a, const char* what) {
  if (s.fuse == 2 && a.element_count() != size_t(s.rows * s.channels))
    return ffi::Error::InvalidArgument(std::string("jaxdl onednn batch_norm: ") + what + " must have the input's shape");
  return ffi::Error::Success();
}

dnnl::batch_normalization_forward::primitive_desc ForwardDesc(const Shape& s) {
  return dnnl::batch_normalization_forward::primitive_desc(Engine(), dnnl::prop_kind::forward_training, s.Data(),
                                                          s.Data(), s.epsilon, s.Flags(), UserScratchpad());
}

// The normalisation and, for fuse 2, the elementwise primitive beside it (the add + ReLU forward, the ReLU's
// backward from the output).
struct Plan {
  dnnl::primitive norm;
  memory::desc scratch;
  memory::desc workspace;  // oneDNN's, for fuse 1; empty otherwise
  dnnl::primitive elementwise;
  memory::desc elementwise_scratch;
};

PlanCache<Plan> plans;

memory At(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

void Execute(const dnnl::primitive& primitive, const memory::desc& scratch, int slot,
             std::unordered_map<int, memory> args) {
  dnnl::stream stream(Engine());
  args[DNNL_ARG_SCRATCHPAD] = At(scratch, Scratch(scratch.get_size(), slot));
  primitive.execute(stream, args);
  stream.wait();
}

Plan ForwardPlan(const Shape& s) {
  auto pd = ForwardDesc(s);
  Plan plan{dnnl::batch_normalization_forward(pd), pd.scratchpad_desc(), pd.workspace_desc(), {}, {}};
  if (s.fuse == 2) {
    dnnl::post_ops relu;
    relu.append_eltwise(dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    auto attr = UserScratchpad();
    attr.set_post_ops(relu);
    dnnl::binary::primitive_desc add(Engine(), dnnl::algorithm::binary_add, s.Data(), s.Data(), s.Data(), attr);
    plan.elementwise = dnnl::binary(add);
    plan.elementwise_scratch = add.scratchpad_desc();
  }
  return plan;
}

Plan BackwardPlan(const Shape& s) {
  dnnl::batch_normalization_backward::primitive_desc pd(Engine(), dnnl::prop_kind::backward, s.Data(), s.Data(),
                                                        s.Data(), s.epsilon, s.Flags(), ForwardDesc(s),
                                                        UserScratchpad());
  Plan plan{dnnl::batch_normalization_backward(pd), pd.scratchpad_desc(), pd.workspace_desc(), {}, {}};
  if (s.fuse == 2) {
    const auto algorithm = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
    dnnl::eltwise_forward::primitive_desc hint(Engine(), dnnl::prop_kind::forward_training, algorithm, s.Data(),
                                               s.Data(), 0.f, 0.f);
    dnnl::eltwise_backward::primitive_desc relu(Engine(), algorithm, s.Data(), s.Data(), s.Data(), 0.f, 0.f, hint,
                                                UserScratchpad());
    plan.elementwise = dnnl::eltwise_backward(relu);
    plan.elementwise_scratch = relu.scratchpad_desc();
  }
  return plan;
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer shift, ffi::AnyBuffer residual,
                   ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> mean, ffi::Result<ffi::AnyBuffer> variance,
                   ffi::Result<ffi::AnyBuffer> workspace, float epsilon, int64_t fuse) {
  Shape s;
  if (auto e = ToShape(x, scale, epsilon, fuse, &s); e.failure()) return e;
  if (auto e = SameSize(s, residual, "the residual"); e.failure()) return e;
  return Guard("batch_norm", [&] {
    auto plan = plans.Get(s.Key('f'), [&] { return ForwardPlan(s); });
    if (workspace->size_bytes() != plan->workspace.get_size())
      throw std::invalid_argument("the workspace operand does not have the size oneDNN asks for");
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, At(s.Data(), x.untyped_data())},
                                         {DNNL_ARG_SCALE, At(s.Channels(), scale.untyped_data())},
                                         {DNNL_ARG_SHIFT, At(s.Channels(), shift.untyped_data())},
                                         {DNNL_ARG_DST, At(s.Data(), y->untyped_data())},
                                         {DNNL_ARG_MEAN, At(s.Channels(), mean->untyped_data())},
                                         {DNNL_ARG_VARIANCE, At(s.Channels(), variance->untyped_data())}};
    if (fuse == 1) args[DNNL_ARG_WORKSPACE] = At(plan->workspace, workspace->untyped_data());
    Execute(plan->norm, plan->scratch, 0, std::move(args));
    if (fuse == 2) {  // y = relu(y + residual), in place
      memory out = At(s.Data(), y->untyped_data());
      Execute(plan->elementwise, plan->elementwise_scratch, 1,
              {{DNNL_ARG_SRC_0, out}, {DNNL_ARG_SRC_1, At(s.Data(), residual.untyped_data())}, {DNNL_ARG_DST, out}});
    }
  });
}

ffi::Error Backward(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer shift, ffi::AnyBuffer mean,
                    ffi::AnyBuffer variance, ffi::AnyBuffer dy, ffi::AnyBuffer output, ffi::AnyBuffer workspace,
                    ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> dscale,
                    ffi::Result<ffi::AnyBuffer> dshift, ffi::Result<ffi::AnyBuffer> dresidual, float epsilon,
                    int64_t fuse) {
  Shape s;
  if (auto e = ToShape(x, scale, epsilon, fuse, &s); e.failure()) return e;
  if (auto e = SameSize(s, output, "the output"); e.failure()) return e;
  if (auto e = SameSize(s, *dresidual, "the residual's gradient"); e.failure()) return e;
  return Guard("batch_norm", [&] {
    auto plan = plans.Get(s.Key('b'), [&] { return BackwardPlan(s); });
    if (workspace.size_bytes() != plan->workspace.get_size())
      throw std::invalid_argument("the workspace operand does not have the size oneDNN asks for");
    void* normalized_gradient = dy.untyped_data();
    if (fuse == 2) {  // the gradient through the ReLU (where the output is positive) is the residual's
      Execute(plan->elementwise, plan->elementwise_scratch, 1,
              {{DNNL_ARG_DST, At(s.Data(), output.untyped_data())}, {DNNL_ARG_DIFF_DST, At(s.Data(), dy.untyped_data())},
               {DNNL_ARG_DIFF_SRC, At(s.Data(), dresidual->untyped_data())}});
      normalized_gradient = dresidual->untyped_data();
    }
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, At(s.Data(), x.untyped_data())},
                                         {DNNL_ARG_SCALE, At(s.Channels(), scale.untyped_data())},
                                         {DNNL_ARG_MEAN, At(s.Channels(), mean.untyped_data())},
                                         {DNNL_ARG_VARIANCE, At(s.Channels(), variance.untyped_data())},
                                         {DNNL_ARG_DIFF_DST, At(s.Data(), normalized_gradient)},
                                         {DNNL_ARG_DIFF_SRC, At(s.Data(), dx->untyped_data())},
                                         {DNNL_ARG_DIFF_SCALE, At(s.Channels(), dscale->untyped_data())},
                                         {DNNL_ARG_DIFF_SHIFT, At(s.Channels(), dshift->untyped_data())}};
    if (fuse == 1) args[DNNL_ARG_WORKSPACE] = At(plan->workspace, workspace.untyped_data());
    Execute(plan->norm, plan->scratch, 0, std::move(args));
  });
}

}  // namespace batch_norm_kernels

#pragma GCC visibility push(default)
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_batch_norm_forward, batch_norm_kernels::Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon").Attr<int64_t>("fuse"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_batch_norm_backward, batch_norm_kernels::Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon").Attr<int64_t>("fuse"));

// The bytes of the workspace a training forward pass over [rows, channels] writes with `fuse` (none but with
// oneDNN's fused ReLU, 1); -1 where oneDNN has no such batch normalisation.
extern "C" int64_t jaxdl_onednn_batch_norm_workspace_bytes(int64_t rows, int64_t channels, int64_t fuse) {
  using namespace batch_norm_kernels;
  try {
    return static_cast<int64_t>(ForwardDesc(Shape{rows, channels, 1e-5f, fuse}).workspace_desc().get_size());
  } catch (const std::exception&) {
    return -1;
  }
}
#pragma GCC visibility pop
