// oneDNN's LSTM as XLA FFI custom calls: one unidirectional layer over [batch, time, features] sequences
// (oneDNN's ntc layout, JAX's batch-major arrays as they are), forward (inference, or training with the
// workspace the backward pass reads) and backward (gradients of the inputs, both initial states, both
// weight matrices and the bias).
//
// Weights arrive as jaxdl's LSTMCell keeps them: the input kernel [features, 4*hidden] and the recurrent
// kernel [hidden, 4*hidden], gates i, f, g, o side by side (oneDNN's ldigo order, with l = d = 1), and the
// bias [4*hidden] (ldgo). oneDNN picks its own weight layouts; the calls reorder into and out of them.
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "common.h"

using dnnl::memory;
using namespace jaxdl_onednn;

namespace recurrent_kernels {

using dt = memory::data_type;
using tag = memory::format_tag;
constexpr auto kDirection = dnnl::rnn_direction::unidirectional_left2right;

struct Shape {
  int64_t n, t, c, h;

  std::string Key(char pass) const {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "lstm%c|%ld,%ld,%ld,%ld", pass, n, t, c, h);
    return buf;
  }
  memory::desc Layer(int64_t features) const { return memory::desc({t, n, features}, dt::f32, tag::ntc); }
  memory::desc State() const { return memory::desc({1, 1, n, h}, dt::f32, tag::ldnc); }
  memory::desc Weights(int64_t in, tag format) const { return memory::desc({1, 1, in, 4, h}, dt::f32, format); }
  memory::desc Bias() const { return memory::desc({1, 1, 4, h}, dt::f32, tag::ldgo); }
};

dnnl::lstm_forward::primitive_desc ForwardDesc(const Shape& s, dnnl::prop_kind prop) {
  return dnnl::lstm_forward::primitive_desc(
      Engine(), prop, kDirection, s.Layer(s.c), s.State(), s.State(), s.Weights(s.c, tag::any),
      s.Weights(s.h, tag::any), s.Bias(), s.Layer(s.h), s.State(), s.State(), UserScratchpad());
}

memory At(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

// The two weight matrices in the layouts a primitive chose, and the reorders from the caller's ldigo ones.
struct Kernels {
  memory::desc wx, wh;
  dnnl::reorder to_wx, to_wh;

  Kernels() = default;
  Kernels(const Shape& s, const memory::desc& chosen_wx, const memory::desc& chosen_wh)
      : wx(chosen_wx), wh(chosen_wh),
        to_wx(dnnl::reorder::primitive_desc(Engine(), s.Weights(s.c, tag::ldigo), Engine(), chosen_wx)),
        to_wh(dnnl::reorder::primitive_desc(Engine(), s.Weights(s.h, tag::ldigo), Engine(), chosen_wh)) {}

  // The caller's kernels reordered into this thread's scratch slots 1 and 2.
  std::pair<memory, memory> From(const Shape& s, dnnl::stream& stream, void* user_wx, void* user_wh) const {
    memory wx_mem = At(wx, Scratch(wx.get_size(), 1)), wh_mem = At(wh, Scratch(wh.get_size(), 2));
    memory wx_user = At(s.Weights(s.c, tag::ldigo), user_wx), wh_user = At(s.Weights(s.h, tag::ldigo), user_wh);
    to_wx.execute(stream, wx_user, wx_mem);
    to_wh.execute(stream, wh_user, wh_mem);
    return {wx_mem, wh_mem};
  }
};

struct ForwardPlan {
  dnnl::lstm_forward lstm;
  memory::desc scratch, workspace;
  Kernels kernels;
};

struct BackwardPlan {
  dnnl::lstm_backward lstm;
  memory::desc dwx, dwh, scratch, workspace;
  Kernels kernels;
  dnnl::reorder from_dwx, from_dwh;
};

PlanCache<ForwardPlan> forward_plans;
PlanCache<BackwardPlan> backward_plans;

ForwardPlan MakeForward(const Shape& s, bool training) {
  auto pd = ForwardDesc(s, training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
  return ForwardPlan{dnnl::lstm_forward(pd), pd.scratchpad_desc(), pd.workspace_desc(),
                     Kernels(s, pd.weights_layer_desc(), pd.weights_iter_desc())};
}

BackwardPlan MakeBackward(const Shape& s) {
  auto hint = ForwardDesc(s, dnnl::prop_kind::forward_training);
  dnnl::lstm_backward::primitive_desc pd(
      Engine(), dnnl::prop_kind::backward, kDirection, s.Layer(s.c), s.State(), s.State(), s.Weights(s.c, tag::any),
      s.Weights(s.h, tag::any), s.Bias(), s.Layer(s.h), s.State(), s.State(), s.Layer(s.c), s.State(), s.State(),
      s.Weights(s.c, tag::any), s.Weights(s.h, tag::any), s.Bias(), s.Layer(s.h), s.State(), s.State(), hint,
      UserScratchpad());
  BackwardPlan p{dnnl::lstm_backward(pd), pd.diff_weights_layer_desc(), pd.diff_weights_iter_desc(),
                 pd.scratchpad_desc(), pd.workspace_desc(), Kernels(s, pd.weights_layer_desc(), pd.weights_iter_desc())};
  p.from_dwx = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p.dwx, Engine(), s.Weights(s.c, tag::ldigo)));
  p.from_dwh = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p.dwh, Engine(), s.Weights(s.h, tag::ldigo)));
  return p;
}

ffi::Error CheckShapes(ffi::AnyBuffer x, ffi::AnyBuffer wh, Shape* s) {
  auto xd = x.dimensions();
  auto whd = wh.dimensions();
  if (xd.size() != 3 || whd.size() != 2 || whd[1] != 4 * whd[0])
    return ffi::Error::InvalidArgument("jaxdl onednn lstm: expected x [batch, time, features] and a recurrent "
                                       "kernel [hidden, 4*hidden]");
  if (x.element_type() != ffi::DataType::F32)
    return ffi::Error::InvalidArgument("jaxdl onednn lstm: only float32 is supported");
  *s = Shape{xd[0], xd[1], xd[2], whd[0]};
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer wx, ffi::AnyBuffer wh,
                   ffi::AnyBuffer bias, ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> h_last,
                   ffi::Result<ffi::AnyBuffer> c_last, ffi::Result<ffi::AnyBuffer> workspace, int64_t training) {
  Shape s;
  if (auto e = CheckShapes(x, wh, &s); e.failure()) return e;
  return Guard("lstm", [&] {
    auto plan = forward_plans.Get(s.Key(training ? 't' : 'i'), [&] { return MakeForward(s, training != 0); });
    if (training && workspace->size_bytes() < plan->workspace.get_size())
      throw std::runtime_error("the workspace output is smaller than oneDNN's workspace");
    dnnl::stream stream(Engine());
    auto [wx_mem, wh_mem] = plan->kernels.From(s, stream, wx.untyped_data(), wh.untyped_data());
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC_LAYER, At(s.Layer(s.c), x.untyped_data())}, {DNNL_ARG_SRC_ITER, At(s.State(), h0.untyped_data())},
        {DNNL_ARG_SRC_ITER_C, At(s.State(), c0.untyped_data())}, {DNNL_ARG_WEIGHTS_LAYER, wx_mem},
        {DNNL_ARG_WEIGHTS_ITER, wh_mem}, {DNNL_ARG_BIAS, At(s.Bias(), bias.untyped_data())},
        {DNNL_ARG_DST_LAYER, At(s.Layer(s.h), y->untyped_data())},
        {DNNL_ARG_DST_ITER, At(s.State(), h_last->untyped_data())},
        {DNNL_ARG_DST_ITER_C, At(s.State(), c_last->untyped_data())},
        {DNNL_ARG_SCRATCHPAD, At(plan->scratch, Scratch(plan->scratch.get_size(), 0))}};
    if (training) args[DNNL_ARG_WORKSPACE] = At(plan->workspace, workspace->untyped_data());
    plan->lstm.execute(stream, args);
    stream.wait();
  });
}

ffi::Error Backward(ffi::AnyBuffer x, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer wx, ffi::AnyBuffer wh,
                    ffi::AnyBuffer bias, ffi::AnyBuffer y, ffi::AnyBuffer h_last, ffi::AnyBuffer c_last,
                    ffi::AnyBuffer workspace, ffi::AnyBuffer dy, ffi::AnyBuffer dh_last, ffi::AnyBuffer dc_last,
                    ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> dh0, ffi::Result<ffi::AnyBuffer> dc0,
                    ffi::Result<ffi::AnyBuffer> dwx, ffi::Result<ffi::AnyBuffer> dwh,
                    ffi::Result<ffi::AnyBuffer> dbias) {
  Shape s;
  if (auto e = CheckShapes(x, wh, &s); e.failure()) return e;
  return Guard("lstm", [&] {
    auto plan = backward_plans.Get(s.Key('b'), [&] { return MakeBackward(s); });
    if (workspace.size_bytes() < plan->workspace.get_size())
      throw std::runtime_error("the workspace input is smaller than oneDNN's workspace");
    dnnl::stream stream(Engine());
    auto [wx_mem, wh_mem] = plan->kernels.From(s, stream, wx.untyped_data(), wh.untyped_data());
    memory dwx_mem = At(plan->dwx, Scratch(plan->dwx.get_size(), 3));
    memory dwh_mem = At(plan->dwh, Scratch(plan->dwh.get_size(), 4));
    // oneDNN adds the weight and bias gradients to what the buffers hold.
    std::memset(dwx_mem.get_data_handle(), 0, plan->dwx.get_size());
    std::memset(dwh_mem.get_data_handle(), 0, plan->dwh.get_size());
    std::memset(dbias->untyped_data(), 0, dbias->size_bytes());
    plan->lstm.execute(stream, {
        {DNNL_ARG_SRC_LAYER, At(s.Layer(s.c), x.untyped_data())}, {DNNL_ARG_SRC_ITER, At(s.State(), h0.untyped_data())},
        {DNNL_ARG_SRC_ITER_C, At(s.State(), c0.untyped_data())}, {DNNL_ARG_WEIGHTS_LAYER, wx_mem},
        {DNNL_ARG_WEIGHTS_ITER, wh_mem}, {DNNL_ARG_BIAS, At(s.Bias(), bias.untyped_data())},
        {DNNL_ARG_DST_LAYER, At(s.Layer(s.h), y.untyped_data())},
        {DNNL_ARG_DST_ITER, At(s.State(), h_last.untyped_data())},
        {DNNL_ARG_DST_ITER_C, At(s.State(), c_last.untyped_data())},
        {DNNL_ARG_WORKSPACE, At(plan->workspace, workspace.untyped_data())},
        {DNNL_ARG_DIFF_SRC_LAYER, At(s.Layer(s.c), dx->untyped_data())},
        {DNNL_ARG_DIFF_SRC_ITER, At(s.State(), dh0->untyped_data())},
        {DNNL_ARG_DIFF_SRC_ITER_C, At(s.State(), dc0->untyped_data())},
        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwx_mem}, {DNNL_ARG_DIFF_WEIGHTS_ITER, dwh_mem},
        {DNNL_ARG_DIFF_BIAS, At(s.Bias(), dbias->untyped_data())},
        {DNNL_ARG_DIFF_DST_LAYER, At(s.Layer(s.h), dy.untyped_data())},
        {DNNL_ARG_DIFF_DST_ITER, At(s.State(), dh_last.untyped_data())},
        {DNNL_ARG_DIFF_DST_ITER_C, At(s.State(), dc_last.untyped_data())},
        {DNNL_ARG_SCRATCHPAD, At(plan->scratch, Scratch(plan->scratch.get_size(), 0))}});
    memory dwx_user = At(s.Weights(s.c, tag::ldigo), dwx->untyped_data());
    memory dwh_user = At(s.Weights(s.h, tag::ldigo), dwh->untyped_data());
    plan->from_dwx.execute(stream, dwx_mem, dwx_user);
    plan->from_dwh.execute(stream, dwh_mem, dwh_user);
    stream.wait();
  });
}

}  // namespace recurrent_kernels

#pragma GCC visibility push(default)
// The workspace a training forward pass leaves for the backward pass, in bytes (asked before tracing, since
// the custom call's outputs must have static shapes).
extern "C" int64_t jaxdl_onednn_lstm_workspace_bytes(int64_t n, int64_t t, int64_t c, int64_t h) {
  using namespace recurrent_kernels;
  try {
    return static_cast<int64_t>(ForwardDesc(Shape{n, t, c, h}, dnnl::prop_kind::forward_training)
                                    .workspace_desc().get_size());
  } catch (const std::exception&) {
    return -1;
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_lstm_forward, recurrent_kernels::Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("training"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_lstm_backward, recurrent_kernels::Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>());
#pragma GCC visibility pop
