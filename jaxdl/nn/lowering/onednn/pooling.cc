// oneDNN's max pooling as XLA FFI custom calls on NHWC images: forward (inference, or training with the
// workspace of argmax positions that the backward pass reads) and backward (the output gradient routed back to
// each window's maximum). Every axis before the last three is batch: a vmapped call folds into one.
//
// XLA computes a max pool's gradient as a select-and-scatter, or as the tie-sharing reduction of max's JVP,
// several times slower than the pooling itself; oneDNN's backward reads the positions the forward pass wrote.
// Padding counts as minus infinity, as in `flax.linen.max_pool`.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common.h"

using dnnl::memory;
using namespace jaxdl_onednn;

namespace pooling_kernels {

struct Window {
  int64_t n, h, w, c, oh, ow;
  int64_t kh, kw, sh, sw, pt, pb, pl, pr;

  std::string Key(char pass) const {
    char buf[192];
    std::snprintf(buf, sizeof(buf), "pool%c|%ld,%ld,%ld,%ld,%ld,%ld|%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld", pass, n, h, w,
                  c, oh, ow, kh, kw, sh, sw, pt, pb, pl, pr);
    return buf;
  }
  memory::desc Image(int64_t height, int64_t width) const {
    return memory::desc({n, c, height, width}, memory::data_type::f32, memory::format_tag::nhwc);
  }
  memory::desc Source() const { return Image(h, w); }
  memory::desc Destination() const { return Image(oh, ow); }
};

// Reads the window (kh, kw, sh, sw, pt, pb, pl, pr) and the shapes: `image` and `pooled` are [..., h, w, c].
ffi::Error ToWindow(ffi::AnyBuffer::Dimensions image, ffi::AnyBuffer::Dimensions pooled, ffi::DataType dtype,
                    ffi::Span<const int64_t> window, Window* g) {
  const size_t r = image.size();
  if (r < 4 || pooled.size() != r || window.size() != 8)
    return ffi::Error::InvalidArgument("jaxdl onednn max_pool: expected [..., h, w, c] images and 8 window values");
  if (dtype != ffi::DataType::F32)
    return ffi::Error::InvalidArgument("jaxdl onednn max_pool: only float32 is supported");
  int64_t n = 1;
  for (size_t i = 0; i + 3 < r; ++i) {
    if (image[i] != pooled[i]) return ffi::Error::InvalidArgument("jaxdl onednn max_pool: batch axes differ");
    n *= image[i];
  }
  if (image[r - 1] != pooled[r - 1]) return ffi::Error::InvalidArgument("jaxdl onednn max_pool: channels differ");
  *g = Window{n, image[r - 3], image[r - 2], image[r - 1], pooled[r - 3], pooled[r - 2],
              window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7]};
  return ffi::Error::Success();
}

dnnl::pooling_forward::primitive_desc ForwardDesc(const Window& g, dnnl::prop_kind prop) {
  return dnnl::pooling_forward::primitive_desc(
      Engine(), prop, dnnl::algorithm::pooling_max, g.Source(), g.Destination(), {g.sh, g.sw}, {g.kh, g.kw}, {0, 0},
      {g.pt, g.pl}, {g.pb, g.pr}, UserScratchpad());
}

struct Plan {
  dnnl::primitive pool;
  memory::desc scratch, workspace;
};

PlanCache<Plan> plans;

ffi::Error Forward(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> workspace,
                   ffi::Span<const int64_t> window, int64_t training) {
  Window g;
  if (auto e = ToWindow(x.dimensions(), y->dimensions(), x.element_type(), window, &g); e.failure()) return e;
  return Guard("max_pool", [&] {
    auto plan = plans.Get(g.Key(training ? 't' : 'i'), [&] {
      auto pd = ForwardDesc(g, training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
      return Plan{dnnl::pooling_forward(pd), pd.scratchpad_desc(), pd.workspace_desc()};
    });
    if (training && workspace->size_bytes() != plan->workspace.get_size())
      throw std::runtime_error("the workspace buffer has " + std::to_string(workspace->size_bytes()) +
                               " bytes, oneDNN wants " + std::to_string(plan->workspace.get_size()));
    dnnl::stream stream(Engine());
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, memory(g.Source(), Engine(), x.untyped_data())},
        {DNNL_ARG_DST, memory(g.Destination(), Engine(), y->untyped_data())},
        {DNNL_ARG_SCRATCHPAD, memory(plan->scratch, Engine(), Scratch(plan->scratch.get_size(), 0))}};
    if (training) args[DNNL_ARG_WORKSPACE] = memory(plan->workspace, Engine(), workspace->untyped_data());
    plan->pool.execute(stream, args);
    stream.wait();
  });
}

ffi::Error Backward(ffi::AnyBuffer dy, ffi::AnyBuffer workspace, ffi::Result<ffi::AnyBuffer> dx,
                    ffi::Span<const int64_t> window) {
  Window g;
  if (auto e = ToWindow(dx->dimensions(), dy.dimensions(), dy.element_type(), window, &g); e.failure()) return e;
  return Guard("max_pool", [&] {
    auto plan = plans.Get(g.Key('b'), [&] {
      auto hint = ForwardDesc(g, dnnl::prop_kind::forward_training);
      dnnl::pooling_backward::primitive_desc pd(Engine(), dnnl::algorithm::pooling_max, g.Source(), g.Destination(),
                                                {g.sh, g.sw}, {g.kh, g.kw}, {0, 0}, {g.pt, g.pl}, {g.pb, g.pr}, hint,
                                                UserScratchpad());
      return Plan{dnnl::pooling_backward(pd), pd.scratchpad_desc(), pd.workspace_desc()};
    });
    if (workspace.size_bytes() != plan->workspace.get_size())
      throw std::runtime_error("the workspace buffer has " + std::to_string(workspace.size_bytes()) +
                               " bytes, oneDNN wants " + std::to_string(plan->workspace.get_size()));
    dnnl::stream stream(Engine());
    plan->pool.execute(stream, {{DNNL_ARG_DIFF_DST, memory(g.Destination(), Engine(), dy.untyped_data())},
                                {DNNL_ARG_WORKSPACE, memory(plan->workspace, Engine(), workspace.untyped_data())},
                                {DNNL_ARG_DIFF_SRC, memory(g.Source(), Engine(), dx->untyped_data())},
                                {DNNL_ARG_SCRATCHPAD,
                                 memory(plan->scratch, Engine(), Scratch(plan->scratch.get_size(), 0))}});
    stream.wait();
  });
}

}  // namespace pooling_kernels

#pragma GCC visibility push(default)
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_max_pool_forward, pooling_kernels::Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("window")
                                  .Attr<int64_t>("training"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxdl_onednn_max_pool_backward, pooling_kernels::Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("window"));

// The bytes of the training workspace for one image [h, w, c] (oneDNN keeps one index per output element:
// one byte for windows of fewer than 256 elements, four otherwise); -1 where oneDNN has no such pooling.
extern "C" int64_t jaxdl_onednn_max_pool_workspace_bytes(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                                                         const int64_t* window) {
  using namespace pooling_kernels;
  try {
    Window g{1, h, w, c, oh, ow, window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7]};
    return static_cast<int64_t>(ForwardDesc(g, dnnl::prop_kind::forward_training).workspace_desc().get_size());
  } catch (const std::exception&) {
    return -1;
  }
}
#pragma GCC visibility pop
