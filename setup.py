"""Builds nytorch_ext._C: CPU kernels always, CUDA kernels when available.

Environment:
  NYTORCH_EXT_CUDA=auto|1|0   auto (default): build the CUDA kernels when nvcc is
                              found and PyTorch is a CUDA build. 1 forces them (also
                              against a CPU-only PyTorch: the CUDA glue uses only
                              device-generic c10 APIs), 0 builds the CPU kernels only.
  TORCH_CUDA_ARCH_LIST        CUDA architectures, default "8.0;9.0+PTX".
  MAX_JOBS                    parallel compile jobs (ninja).

Install with `pip install --no-build-isolation .` on a machine that already has
PyTorch: build isolation would download another torch.
"""
import glob
import os
import platform
import shutil

from setuptools import setup
from torch.utils import cpp_extension


def find_cuda_home() -> str | None:
    """The CUDA toolkit: torch's own finding, else CUDA_HOME/CUDA_PATH, else nvcc's
    location. (A CPU-only torch does not look for one at all.)"""
    if cpp_extension.CUDA_HOME:
        return cpp_extension.CUDA_HOME
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda",
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None]
    for home in filter(None, candidates):  # a toolkit has both nvcc and the runtime
        if os.path.exists(os.path.join(home, "bin", "nvcc")) and glob.glob(
                os.path.join(home, "lib*", "libcudart.so*")):
            return home
    return None


def want_cuda() -> bool:
    choice = os.environ.get("NYTORCH_EXT_CUDA", "auto").strip().lower()
    if choice in ("1", "on", "true", "yes"):
        home = find_cuda_home()
        if home is None:
            raise RuntimeError("NYTORCH_EXT_CUDA=1 but no CUDA toolkit (nvcc) was found")
        # BuildExtension compiles .cu files with the nvcc under this module global.
        cpp_extension.CUDA_HOME = home
        return True
    if choice in ("0", "off", "false", "no"):
        return False
    if choice != "auto":
        raise ValueError(f"NYTORCH_EXT_CUDA must be auto, 1 or 0, got {choice!r}")
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


# csrc/cpu/kernels.cpp is compiled once per CPU capability, each copy in its own
# namespace with its own instruction set, as ATen compiles its kernels; at run
# time csrc/cpu/dispatch.cpp picks the one at::get_cpu_capability() names.
CPU_KERNELS = "csrc/cpu/kernels.cpp"
CPU_CAPABILITY_FLAGS = {"DEFAULT": []}
if platform.machine().lower() in ("x86_64", "amd64"):
    CPU_CAPABILITY_FLAGS["AVX2"] = ["-mavx2", "-mfma", "-mf16c"]
    CPU_CAPABILITY_FLAGS["AVX512"] = [
        "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
    ]


class BuildExtension(cpp_extension.BuildExtension):
    def build_extension(self, ext):
        # One object per capability, DEFAULT first so the linker keeps baseline
        # copies of any inline PyTorch function the variants also instantiate.
        objects = []
        for capability, flags in CPU_CAPABILITY_FLAGS.items():
            # -ffp-contract=off: -mfma would otherwise fuse a*x + b*y differently in
            # the vector body and the scalar tail; unfused, every element, every
            # capability and the CUDA build (-fmad=false) round identically.
            # -Wno-maybe-uninitialized: GCC 12 false positives inside c10::SmallVector;
            # -Wno-uninitialized: GCC 12's _mm512_undefined_ps() (self-initialized on
            # purpose) under Vectorized<float>::sqrt (GCC PR 105593).
            cxx = ext.extra_compile_args["cxx"] + flags + ["-ffp-contract=off", "-Wno-maybe-uninitialized",
                "-Wno-uninitialized",
                f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}",
            ]
            objects += self.compiler.compile(
                [CPU_KERNELS],
                output_dir=os.path.join(self.build_temp, f"cpu_{capability.lower()}"),
                include_dirs=ext.include_dirs,
                extra_postargs={"cxx": cxx, "nvcc": []},
            )
        ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)


def extension():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    sources.remove(CPU_KERNELS)
    cxx = ["-O3", "-fvisibility=hidden", "-Wno-unknown-pragmas"]
    # -fmad=false: no FMA contraction, so CUDA rounds exactly like the CPU kernels
    # (the kernels are memory-bound; fusing buys nothing measurable).
    nvcc = ["-O3", "-lineinfo", "-fmad=false"]
    link = []
    import torch

    if torch.backends.openmp.is_available():
        # at::parallel_for is inline and, with torch's OpenMP backend, a bare
        # `#pragma omp parallel`: without -fopenmp it silently runs on one thread.
        # The runtime is torch's own libgomp.so.1, already loaded (same soname).
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    kwargs = {}
    if want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        sources += sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        cuda_lib = os.path.join(cpp_extension.CUDA_HOME, "lib64")
        cxx.append("-DNYTORCH_EXT_WITH_CUDA")
        kwargs = dict(
            library_dirs=[cuda_lib],
            libraries=["cudart"],
            # torch's CUDA build has loaded libcudart already; the rpath lets a
            # CUDA-enabled build import next to a CPU-only torch too.
            runtime_library_dirs=[cuda_lib],
        )
    # CppExtension, not CUDAExtension: the latter links torch_cuda, which a
    # CPU-only PyTorch lacks; BuildExtension still compiles the .cu files with nvcc.
    return cpp_extension.CppExtension(
        "nytorch_ext._C",
        sources,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=link,
        **kwargs,
    )


# Metadata, dependencies and the package list live in pyproject.toml; this call adds
# only what a declarative file cannot: the compiled extension and its build command.
setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
