// oneDNN convolutions as XLA FFI handlers (CPU): forward, backward-data, backward-weights.
//
// Compiled on first use by cmnet_jax/models/onednn.py. Tensors arrive in the layouts the
// encoders use (activations NHWC, kernels HWIO, float32, dense row-major); each handler lets
// oneDNN choose its preferred (blocked) layouts and reorders into and out of them. Attributes:
// strides (sh, sw) and the low-side padding (ph, pw); the high-side padding follows from the
// shapes, as in XLA.
#include <cstdint>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Geometry {
  memory::dims src, wei, dst, strides, pad_l, pad_r;
};

// x: [n, h, w, c]; y: [n, oh, ow, o]; kernel: [kh, kw, c, o].
Geometry MakeGeometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> y,
                      ffi::Span<const int64_t> k, int64_t sh, int64_t sw, int64_t ph,
                      int64_t pw) {
  Geometry g;
  g.src = {x[0], x[3], x[1], x[2]};
  g.wei = {k[3], k[2], k[0], k[1]};
  g.dst = {y[0], y[3], y[1], y[2]};
  g.strides = {sh, sw};
  g.pad_l = {ph, pw};
  g.pad_r = {(y[1] - 1) * sh + k[0] - x[1] - ph, (y[2] - 1) * sw + k[1] - x[2] - pw};
  return g;
}

memory::desc Any(const memory::dims& dims) { return memory::desc(dims, dt::f32, tag::any); }

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Any(g.src), Any(g.wei), Any(g.dst), g.strides, g.pad_l, g.pad_r);
}

// `user` in the layout the primitive wants (a reordered copy when it differs).
memory Into(const memory::desc& want, const memory& user, dnnl::stream& s) {
  if (want == user.get_desc()) return user;
  memory m(want, Engine());
  dnnl::reorder(user, m).execute(s, const_cast<memory&>(user), m);
  return m;
}

memory User(const memory::dims& dims, tag t, const void* data) {
  return memory({dims, dt::f32, t}, Engine(), const_cast<void*>(data));
}

template <typename F>
ffi::Error Guarded(F f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                   ffi::ResultBuffer<ffi::F32> y, int64_t sh, int64_t sw, int64_t ph,
                   int64_t pw) {
  return Guarded([&] {
    Geometry g = MakeGeometry(x.dimensions(), y->dimensions(), w.dimensions(), sh, sw, ph, pw);
    auto pd = ForwardDesc(g);
    dnnl::stream s(Engine());
    memory yu = User(g.dst, tag::nhwc, y->typed_data());
    memory xm = Into(pd.src_desc(), User(g.src, tag::nhwc, x.typed_data()), s);
    memory wm = Into(pd.weights_desc(), User(g.wei, tag::hwio, w.typed_data()), s);
    memory ym = pd.dst_desc() == yu.get_desc() ? yu : memory(pd.dst_desc(), Engine());
    dnnl::convolution_forward(pd).execute(
        s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}});
    if (ym != yu) dnnl::reorder(ym, yu).execute(s, ym, yu);
    s.wait();
  });
}

ffi::Error BackwardData(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                        ffi::ResultBuffer<ffi::F32> dx, int64_t sh, int64_t sw, int64_t ph,
                        int64_t pw) {
  return Guarded([&] {
    Geometry g = MakeGeometry(dx->dimensions(), dy.dimensions(), w.dimensions(), sh, sw, ph, pw);
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, Any(g.src), Any(g.wei), Any(g.dst),
        g.strides, g.pad_l, g.pad_r, ForwardDesc(g));
    dnnl::stream s(Engine());
    memory xu = User(g.src, tag::nhwc, dx->typed_data());
    memory dm = Into(pd.diff_dst_desc(), User(g.dst, tag::nhwc, dy.typed_data()), s);
    memory wm = Into(pd.weights_desc(), User(g.wei, tag::hwio, w.typed_data()), s);
    memory xm = pd.diff_src_desc() == xu.get_desc() ? xu : memory(pd.diff_src_desc(), Engine());
    dnnl::convolution_backward_data(pd).execute(
        s, {{DNNL_ARG_DIFF_DST, dm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, xm}});
    if (xm != xu) dnnl::reorder(xm, xu).execute(s, xm, xu);
    s.wait();
  });
}

ffi::Error BackwardWeights(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                           ffi::ResultBuffer<ffi::F32> dw, int64_t sh, int64_t sw, int64_t ph,
                           int64_t pw) {
  return Guarded([&] {
    Geometry g = MakeGeometry(x.dimensions(), dy.dimensions(), dw->dimensions(), sh, sw, ph, pw);
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, Any(g.src), Any(g.wei), Any(g.dst),
        g.strides, g.pad_l, g.pad_r, ForwardDesc(g));
    dnnl::stream s(Engine());
    memory wu = User(g.wei, tag::hwio, dw->typed_data());
    memory xm = Into(pd.src_desc(), User(g.src, tag::nhwc, x.typed_data()), s);
    memory dm = Into(pd.diff_dst_desc(), User(g.dst, tag::nhwc, dy.typed_data()), s);
    memory wm = pd.diff_weights_desc() == wu.get_desc() ? wu
                                                        : memory(pd.diff_weights_desc(), Engine());
    dnnl::convolution_backward_weights(pd).execute(
        s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dm}, {DNNL_ARG_DIFF_WEIGHTS, wm}});
    if (wm != wu) dnnl::reorder(wm, wu).execute(s, wm, wu);
    s.wait();
  });
}

}  // namespace

#define CMNET_BIND                                                                    \
  ffi::Ffi::Bind()                                                                    \
      .Arg<ffi::Buffer<ffi::F32>>()                                                   \
      .Arg<ffi::Buffer<ffi::F32>>()                                                   \
      .Ret<ffi::Buffer<ffi::F32>>()                                                   \
      .Attr<int64_t>("sh")                                                            \
      .Attr<int64_t>("sw")                                                            \
      .Attr<int64_t>("ph")                                                            \
      .Attr<int64_t>("pw")

XLA_FFI_DEFINE_HANDLER_SYMBOL(CmnetOnednnConvForward, Forward, CMNET_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CmnetOnednnConvBackwardData, BackwardData, CMNET_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CmnetOnednnConvBackwardWeights, BackwardWeights, CMNET_BIND);
