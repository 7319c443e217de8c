"""Build ltbench and its compiled op library ``ltbench._C``.

Environment switches (read at build time):

* ``LTBENCH_NO_EXTENSION=1`` - build no extension at all; ltbench then runs on the
  pure-PyTorch reference ops.
* ``FORCE_CUDA=1`` - compile the CUDA sources even when torch cannot see a GPU (this is how
  CI proves the ``.cu`` files compile on a machine without one). Without it, CUDA sources are
  compiled only where a GPU is visible (and nvcc and a CUDA build of torch are present):
  compiling them for a machine that cannot run them cost about 6 of the 7.5 minutes of an
  install on a 2-core machine.
* ``TORCH_CUDA_ARCH_LIST`` - target architectures; when unset and no GPU is visible we
  default to a short list of current data-centre and workstation parts instead of
  torch's long default, to keep the build quick.
* ``LTBENCH_NATIVE=1`` - compile the CPU kernels with ``-march=native`` (the build machine's
  full instruction set, e.g. AVX-512). Off by default: an extension built that way dies with
  an illegal instruction on an older node that shares the environment. The default build is
  portable and still fast: on x86-64 every CPU kernel is compiled twice, for the baseline and
  for AVX2 + FMA, and the AVX2 copy is chosen at run time where the CPU has it
  (``csrc/common/cpu_isa.h``; ``LTBENCH_CPU_ISA=base`` forces the baseline).
"""

import glob
import os
import platform
import shutil
import sysconfig

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;8.6;9.0+PTX"


def _truthy(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _nvidia_wheel_includes():
    """Include dirs of the nvidia-* wheels torch installs (cusparse.h and friends live there,
    not in every system CUDA toolkit)."""
    site = sysconfig.get_paths()["purelib"]
    dirs = glob.glob(os.path.join(site, "nvidia", "*", "include"))
    dirs += glob.glob(os.path.join(site, "nvidia", "*", "*", "include"))
    return sorted(d for d in set(dirs) if os.path.isdir(d))


def _cuda_library_dirs(cuda_home):
    """Directories holding libcudart.so. CUDA_HOME may be a prefix such as /usr/local whose
    nvcc is a wrapper script, so also look next to the toolkit nvcc really runs from."""
    candidates = []
    for root in {cuda_home, *glob.glob("/usr/local/cuda*")}:
        if root:
            candidates += [os.path.join(root, "lib64"), os.path.join(root, "lib")]
    return [d for d in candidates if os.path.exists(os.path.join(d, "libcudart.so"))]


def _extensions():
    if _truthy("LTBENCH_NO_EXTENSION"):
        print("ltbench: LTBENCH_NO_EXTENSION set, building no extension")
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    cpp_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/ops/*/*_cpu.cpp") + glob.glob("csrc/ops/*/*_cpu_*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/ops/*/*_cuda.cu"))
    have_nvcc = CUDA_HOME is not None and shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else "nvcc")
    use_cuda = _truthy("FORCE_CUDA") or (bool(have_nvcc) and torch.version.cuda is not None and torch.cuda.is_available())
    if _truthy("FORCE_CUDA") and not have_nvcc:
        raise RuntimeError("FORCE_CUDA=1 but nvcc was not found (set CUDA_HOME)")

    include_dirs = [os.path.join(ROOT, "csrc")]
    cxx_flags = ["-O3"]  # the C++ standard comes from torch (C++20 for torch >= 2.10)
    define_macros = []
    if _truthy("LTBENCH_NATIVE"):
        cxx_flags.append("-march=native")
    elif platform.machine().lower() in ("x86_64", "amd64"):
        define_macros.append(("LTBENCH_AVX2_KERNELS", None))
    # OpenMP parallelises the CPU loops (torch's at::parallel_for uses it too).
    cxx_flags.append("-fopenmp")
    # no errno from libm: lets the compiler call the vectorised exp/log of glibc's libmvec.
    # No FP-exception traps either: without it gcc neither vectorises floorf nor if-converts
    # the branch-free selects of the fastmath exp/log, and those loops stay scalar (channel_sample
    # 4.3x, imitation_bce 2.5x slower).
    # The kernels never read the FP exception flags, so nothing observable changes.
    cxx_flags += ["-fno-math-errno", "-fno-trapping-math"]
    # No contraction of a * b + c into one FMA: the baseline, AVX2 and CUDA builds then round
    # every operation of the shared math the same way, so all give the same bits.
    cxx_flags.append("-ffp-contract=off")
    nvcc_flags = ["-O3", "--fmad=false"]
    if use_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        include_dirs += _nvidia_wheel_includes()
        library_dirs = _cuda_library_dirs(CUDA_HOME)
        define_macros.append(("LTBENCH_WITH_CUDA", None))
        ext = CUDAExtension(
            "ltbench._C",
            cpp_sources + cuda_sources,
            include_dirs=include_dirs,
            library_dirs=library_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=["-fopenmp"],
        )
        print(f"ltbench: building CPU + CUDA kernels (arch {os.environ.get('TORCH_CUDA_ARCH_LIST', 'auto')})")
    else:
        ext = CppExtension(
            "ltbench._C",
            cpp_sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
        print("ltbench: building CPU kernels only")
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["ltbench", "ltbench.*", "baselines", "baselines.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    include_package_data=True,
)
