// The ltbench op library: every schema is declared here, once; each backend file
// (csrc/ops/<op>/<op>_cpu.cpp, <op>_cuda.cu) ends with its TORCH_LIBRARY_IMPL block.
// Python's ltbench.ops registers the fake (shape) kernels and autograd formulas.
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "common/cpu_isa.h"

extern "C" {
// Importing ltbench._C runs the static registrations below; the module itself is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(ltbench, m) {
  // Build probe: out = x * alpha. The smallest op through the CPU and CUDA build and dispatch
  // paths; a failing build shows up here first.
  m.def("probe_scale(Tensor x, float alpha) -> Tensor");
  // Which copy of the CPU kernels runs here: "avx2" or "base" (common/cpu_isa.h).
  m.def("cpu_isa() -> str", []() { return std::string(ltbench::cpu_isa_name()); });
  // Inverse-CDF draw from softmax over channels: logits [B,C,H,W], uniforms [B,H,W] -> int64 [B,H,W].
  m.def("channel_sample(Tensor logits, Tensor u) -> Tensor");
  // Imitation loss (Eq. 2): mean BCE(softmax(logits), one_hot(idx)); its backward is its own op.
  m.def("imitation_bce(Tensor student_logits, Tensor idx) -> Tensor");
  m.def("imitation_bce_backward(Tensor grad, Tensor student_logits, Tensor idx) -> Tensor");
  // Eq. 7-12 as a select: z_f = pick ? z_t : z_h, pick = (m_s != m_g) ? m_s : m_r.
  m.def("mask_fuse(Tensor z_t, Tensor z_h, Tensor m_s, Tensor m_g, Tensor m_r) -> Tensor");
  // Into a preallocated output (no page faults of a fresh allocation in loops).
  m.def("mask_fuse.out(Tensor z_t, Tensor z_h, Tensor m_s, Tensor m_g, Tensor m_r, *, Tensor(a!) out) -> ()");
  m.def("mask_fuse_backward(Tensor grad, Tensor m_s, Tensor m_g, Tensor m_r) -> (Tensor, Tensor)");
}
